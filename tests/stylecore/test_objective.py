"""One level's objective: only the terms with weight are built, and a whole level (setup, searches,
L-BFGS) runs without reading a device value back to the host."""

from __future__ import annotations

import copy

import pytest
import torch

from stylecore import FusionParams, image_to_tensor
from stylecore.lbfgs import minimize
from stylecore.matching import SearchSettings
from stylecore.objective import FusionObjective, stack_terms
from tests.demo_images import demo_image


def test_terms_with_zero_weight_build_nothing(stylizer):
    """A Gatys-only objective holds no patch bank (no basis, no search); one without the global term
    no Gram matrices; without content weight no content target. The others are unchanged."""
    content = stylizer.extractor.normalization(image_to_tensor(demo_image("content/cat_chelsea.png", 64)))
    style = stylizer.extractor.normalization(image_to_tensor(demo_image("style/texture_zebra.jpg", 64)))
    gatys = FusionObjective(stylizer.extractor, content, style, FusionParams(alpha_local=0.0))
    assert gatys.local_loss is None and gatys.global_loss is not None and gatys.content_loss is not None
    assert FusionParams().content_layer in gatys.layers, "the content layer is still read"
    local_only = FusionObjective(stylizer.extractor, content, style, FusionParams(alpha_global=0.0, alpha_content=0.0))
    assert local_only.global_loss is None and local_only.content_loss is None and local_only.local_loss is not None
    assert local_only.layers == ("relu3_1",)
    full = FusionObjective(stylizer.extractor, content, style, FusionParams())
    terms, gatys_terms = full.terms(content), gatys.terms(content)
    assert float(gatys_terms["local"]) == 0
    assert torch.equal(terms["global"], gatys_terms["global"]) and torch.equal(terms["content"], gatys_terms["content"])


@pytest.mark.parametrize("params, search", [
    (FusionParams(iterations=12).with_overrides(reuse_min_patches=0), SearchSettings()),  # reduced, propagated, all
    (FusionParams(iterations=12).with_overrides(reuse_min_patches=0),
     SearchSettings(query_block=2**31, bank_block=2**31, search_dtype=torch.float16)),  # as on a GPU
    (FusionParams(iterations=4).with_overrides(match_every=1),
     SearchSettings(search_dtype=torch.float16)),  # the exact search, shortlisted in float16
])
def test_a_whole_level_runs_without_reading_a_device_value(stylizer, params, search):
    """On the meta device every read of a tensor's value (`.item()`, `float()`, `if tensor:`) raises.
    A level built and optimised there, with every kind of search its schedule plans and the final
    loss, therefore syncs a GPU nowhere between its setup and the end of the synthesis."""
    extractor = copy.deepcopy(stylizer.extractor).to("meta")
    content, style = torch.empty(1, 3, 64, 64, device="meta"), torch.empty(1, 3, 60, 64, device="meta")
    objective = FusionObjective(extractor, content, style, params, search=search)
    searches = []
    match = objective.local_loss.matcher.match

    def recording(features, kind="exact", current=None):
        searches.append(kind)
        return match(features, kind, current)

    objective.local_loss.matcher.match = recording

    def evaluate(point: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = point.detach().requires_grad_(True)
        total = stack_terms(objective.terms(pixels)).sum()
        total.backward()
        return total.detach(), pixels.grad

    found = minimize(evaluate, content, params.iterations)
    with torch.no_grad():
        objective.terms(found.point, final=True)
    expected = {"exact"} if params.matching.match_every == 1 else {"reduced", "reduced_all"}
    assert set(searches) == expected and found.point.device.type == "meta"


def _terms_of_the_content(stylizer, params: FusionParams, tiles: int,
                          result_side: int | None = None) -> dict[str, float]:
    """The terms of the 64 px cat itself against the 64 px zebra, both tiled `tiles` x `tiles`: the
    same patches (but at the seams) in an image of `tiles`**2 times the area."""
    normalize = stylizer.extractor.normalization
    content = normalize(image_to_tensor(demo_image("content/cat_chelsea.png", 64))).repeat(1, 1, tiles, tiles)
    style = normalize(image_to_tensor(demo_image("style/texture_zebra.jpg", 64))).repeat(1, 1, tiles, tiles)
    objective = FusionObjective(stylizer.extractor, content, style, params.with_overrides(match_every=1),
                                result_side=result_side)
    with torch.no_grad():
        return {name: float(value) for name, value in objective.terms(content).items()}


def test_the_mean_local_term_keeps_its_scale_across_sizes_where_the_sum_grows_with_the_area(stylizer):
    """The same patches in an image of 4x the area, without the size factor: the "mean" local term
    stays the same within a tolerance (the seams' patches differ), the paper's summed one grows about 4x."""
    mean = FusionParams(local_normalization="mean", style_size_exponent=0.0)
    small, large = _terms_of_the_content(stylizer, mean, 1), _terms_of_the_content(stylizer, mean, 2)
    assert large["local"] == pytest.approx(small["local"], rel=0.1)
    summed = FusionParams(local_normalization="sum", style_size_exponent=0.0)
    growth = _terms_of_the_content(stylizer, summed, 2)["local"] / _terms_of_the_content(stylizer, summed, 1)["local"]
    assert 3.6 < growth < 4.4


def test_the_size_factor_of_the_results_side_multiplies_both_style_terms_only(stylizer):
    """At exponent 0.7 the style terms of the 64 and 128 px objectives are (side / 384) ** 0.7 times
    those at exponent 0; `result_side` sets the side the factor reads (a coarse level of a larger
    result: 768 gives 2 ** 0.7 whatever the level's size), and the content term never changes."""
    plain = FusionParams(style_size_exponent=0.0)
    for tiles, side in ((1, 64), (2, 128)):
        unscaled = _terms_of_the_content(stylizer, plain, tiles)
        scaled = _terms_of_the_content(stylizer, plain.with_overrides(style_size_exponent=0.7), tiles)
        as_level = _terms_of_the_content(stylizer, plain.with_overrides(style_size_exponent=0.7), tiles, 768)
        for name in ("global", "local"):
            assert scaled[name] == pytest.approx(unscaled[name] * (side / 384) ** 0.7, rel=1e-5)
            assert as_level[name] == pytest.approx(unscaled[name] * 2 ** 0.7, rel=1e-5)
        assert scaled["content"] == as_level["content"] == unscaled["content"]


def test_style_strength_scales_both_style_terms_and_zero_builds_neither(stylizer):
    normalize = stylizer.extractor.normalization
    content = normalize(image_to_tensor(demo_image("content/cat_chelsea.png", 64)))
    style = normalize(image_to_tensor(demo_image("style/texture_zebra.jpg", 64)))
    params = FusionParams().with_overrides(match_every=1)
    base = FusionObjective(stylizer.extractor, content, style, params).terms(content)
    stronger = params.with_overrides(style_strength=2.0)
    doubled = FusionObjective(stylizer.extractor, content, style, stronger).terms(content)
    for name in ("global", "local"):
        assert float(doubled[name]) == pytest.approx(2 * float(base[name]), rel=1e-6)
    assert torch.equal(doubled["content"], base["content"])
    none = FusionObjective(stylizer.extractor, content, style, params.with_overrides(style_strength=0.0))
    assert none.global_loss is None and none.local_loss is None and none.layers == (params.content_layer,)
    terms = none.terms(content + 1.0)
    assert float(terms["global"]) == float(terms["local"]) == 0.0 and float(terms["content"]) > 0
