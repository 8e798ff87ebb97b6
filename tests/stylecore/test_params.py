"""The parameters object: the defaults, the paper's settings one call away, and clear refusals of
impossible values."""

from __future__ import annotations

import dataclasses
import math

import pytest

from stylecore import FusionParams, MatchingParams
from stylecore.params import MATCHING_FIELDS


def test_paper_gives_the_papers_settings():
    """Sec. IV: alpha_1 = 20, alpha_2 = 1e-4, alpha_3 = 20; Eq. (4)'s summed local term; Sec. III's
    random initialisation; Sec. V's layers and 3x3 stride-1 patches; no colour preservation."""
    params = FusionParams.paper()
    assert (params.alpha_global, params.alpha_local, params.alpha_content) == (20.0, 1e-4, 20.0)
    assert (params.local_normalization, params.init, params.style_strength, params.tv_weight) == \
        ("sum", "noise", 1.0, 0.0)
    assert not params.preserve_color
    assert params.global_layers == ("relu1_2", "relu2_2", "relu3_3", "relu4_2")
    assert (params.local_layer, params.content_layer, params.patch_size, params.patch_stride) == \
        ("relu3_1", "relu3_1", 3, 1)
    assert params.layers == ("relu1_2", "relu2_2", "relu3_3", "relu4_2", "relu3_1")
    assert (params.size, params.levels, params.iterations) == (384, 3, 100)


def test_defaults_depart_from_the_paper_only_in_the_measured_fields():
    """The default keeps the paper's style layers and pyramid; it changes the weights, the local term's
    normalisation, the content layer, the initialisation and the style weights' size factor (issue 16)."""
    default, paper = FusionParams(), FusionParams.paper()
    changed = {name for name, value in default.flattened().items() if paper.flattened()[name] != value}
    assert changed == {"alpha_global", "alpha_local", "alpha_content", "local_normalization", "init", "content_layer",
                       "style_size_exponent"}
    assert (default.local_normalization, default.init, default.content_layer) == ("mean", "content", "relu2_1")
    assert (default.alpha_global, default.alpha_local, default.alpha_content) == (5.0, 15.0, 35.0)


def test_style_strength_scales_both_style_weights_only():
    params = FusionParams(alpha_global=4.0, alpha_local=10.0, alpha_content=20.0, style_strength=0.5)
    assert (params.global_weight, params.local_weight, params.alpha_content) == (2.0, 5.0, 20.0)
    assert FusionParams(style_strength=0.0).local_weight == 0.0


def test_the_style_weights_are_calibrated_at_384_px_and_scale_with_the_results_side():
    """(side / 384) ** 0.7 by default: 1 at 384 px, 2 ** 0.7 at 768, 2 ** -0.7 at 192; the paper's
    settings use the same weights at every size."""
    default = FusionParams()
    assert default.size_factor(384) == 1.0
    assert default.size_factor(768) == pytest.approx(2 ** 0.7) and default.size_factor(192) == pytest.approx(2 ** -0.7)
    assert FusionParams.paper().size_factor(1024) == FusionParams.paper().size_factor(96) == 1.0


@pytest.mark.parametrize("field, value", [
    ("alpha_local", -1.0), ("alpha_global", math.nan), ("levels", 0), ("iterations", 0), ("size", 0),
    ("style_strength", -0.5), ("style_strength", math.nan), ("init", "zeros"), ("local_normalization", "max"),
    ("style_size_exponent", math.inf), ("style_size_exponent", math.nan),
])
def test_impossible_values_are_refused_with_the_field_name(field, value):
    with pytest.raises(ValueError, match=field):
        FusionParams(**{field: value})


def test_overrides_ignore_none():
    params = FusionParams().with_overrides(size=None, iterations=7)
    assert params.size == 384 and params.iterations == 7


def test_overrides_take_matching_fields_by_their_flat_names():
    """Command lines and manifests name every setting flat; the matching ones land in `matching`."""
    params = FusionParams().with_overrides(match_every=1, search_step=None, size=128)
    assert params.matching == MatchingParams(match_every=1) and params.size == 128
    assert params.with_overrides(matching=MatchingParams(search_dim=0), search_step=3).matching == \
        MatchingParams(search_dim=0, search_step=3)
    with pytest.raises(TypeError):
        FusionParams().with_overrides(no_such_field=1)


def test_flattened_names_every_setting_once():
    flat = FusionParams().flattened()
    own = {field.name for field in dataclasses.fields(FusionParams)} - {"matching"}
    assert not own & MATCHING_FIELDS, "a flat name must say which object it belongs to"
    assert set(flat) == own | MATCHING_FIELDS
    assert flat["match_every"] == 5 and flat["alpha_local"] == FusionParams().alpha_local
    assert FusionParams.paper().with_overrides(preserve_color=True, style_strength=2.0).flattened() | \
        {"preserve_color": False, "style_strength": 1.0} == FusionParams.paper().flattened()


def test_matching_defaults_are_the_documented_fast_matching():
    matching = FusionParams().matching
    assert (matching.match_every, matching.search_dim, matching.search_candidates, matching.search_step) == \
        (5, 128, 8, 2)
    assert not matching.exact_level_end
