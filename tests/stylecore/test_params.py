"""The parameters object: the paper's defaults and clear refusals of impossible values."""

from __future__ import annotations

import dataclasses
import math

import pytest

from stylecore import FusionParams, MatchingParams
from stylecore.params import MATCHING_FIELDS


def test_defaults_are_the_papers():
    params = FusionParams()
    assert (params.alpha_global, params.alpha_local, params.alpha_content) == (20.0, 1e-4, 20.0)
    assert params.global_layers == ("relu1_2", "relu2_2", "relu3_3", "relu4_2")
    assert (params.local_layer, params.content_layer, params.patch_size, params.patch_stride) == \
        ("relu3_1", "relu3_1", 3, 1)
    assert params.layers == ("relu1_2", "relu2_2", "relu3_3", "relu4_2", "relu3_1")


@pytest.mark.parametrize("field, value", [
    ("alpha_local", -1.0), ("alpha_global", math.nan), ("levels", 0), ("iterations", 0), ("size", 0),
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
    assert flat["match_every"] == 5 and flat["alpha_local"] == 1e-4


def test_matching_defaults_are_the_documented_fast_matching():
    matching = FusionParams().matching
    assert (matching.match_every, matching.search_dim, matching.search_candidates, matching.search_step) == \
        (5, 128, 8, 2)
    assert not matching.exact_level_end
