"""The exact objective that compares runs made with different matching settings, and the quality
measures: structure score and style ratios."""

from __future__ import annotations

import pytest
import torch

from stylecore import FusionParams, image_to_tensor
from stylecore.images import fit_long_side, resize
from stylecore.losses import content_loss, gram_loss, gram_matrix, mrf_loss
from stylecore.metrics import exact_objective, structure_score, style_ratios
from stylecore.patches import MRFTarget, PatchBank
from tests.demo_images import demo_image


def test_exact_objective_is_eq1_with_exact_matching_at_the_finest_level(stylizer):
    """Whatever matching made the image, its objective is recomputed from the loss functions
    with an exact nearest-patch search, the style sized to the image's longest side; the default
    local term is the summed loss times 2 / (C*H*W) of the local layer's map, and both style
    terms carry the size factor of the image's longest side."""
    content = image_to_tensor(demo_image("content/cat_chelsea.png", 64))
    style = image_to_tensor(demo_image("style/starry_night_vangogh.jpg", 80))
    params = FusionParams(size=None, levels=2, iterations=4).with_overrides(
        match_every=3, search_dim=4, search_candidates=1, reuse_min_patches=0)
    image = stylizer(content, style, params).image
    terms = exact_objective(stylizer.extractor, image, content, style, params)

    normalize = stylizer.extractor.normalization
    height, width = image.shape[-2:]
    with torch.no_grad():
        features = stylizer.extractor(normalize(image), params.layers)
        style_features = stylizer.extractor(
            normalize(resize(style, *fit_long_side(*style.shape[-2:], max(height, width)))), params.layers)
        content_features = stylizer.extractor(normalize(resize(content, height, width)), params.layers)
        expected_global = sum(gram_loss(features[layer], gram_matrix(style_features[layer]))
                              for layer in params.global_layers)
        bank = PatchBank.from_features(style_features[params.local_layer], params.patch_size)
        expected_local = mrf_loss(features[params.local_layer], MRFTarget.nearest(bank, features[params.local_layer]))
        expected_content = content_loss(features[params.content_layer], content_features[params.content_layer])
    factor = (max(height, width) / 384) ** 0.7
    assert torch.isclose(torch.tensor(terms.global_), params.alpha_global * factor * expected_global, rtol=1e-5)
    mean_scale = 2.0 / features[params.local_layer].numel()  # local_normalization "mean"
    assert torch.isclose(torch.tensor(terms.local), params.alpha_local * factor * mean_scale * expected_local,
                         rtol=1e-5)
    assert torch.isclose(torch.tensor(terms.content), params.alpha_content * expected_content, rtol=1e-5)
    assert terms.tv == 0


def _squares(offset: int = 0, size: int = 64) -> torch.Tensor:
    """(1, 3, size, size) black image with two white squares, moved right by `offset` px."""
    image = torch.zeros(1, 3, size, size)
    image[..., 10:30, 8 + offset:28 + offset] = 1.0
    image[..., 38:54, 30 + offset:50 + offset] = 0.6
    return image


def test_structure_score_is_one_for_the_same_edges_lower_for_moved_ones_and_zero_for_noise():
    content = _squares()
    assert structure_score(content, content) == pytest.approx(1.0, abs=1e-9)
    assert structure_score(content, 0.5 * content + 0.2) == pytest.approx(1.0, abs=1e-9), "contrast does not matter"
    near, far = structure_score(content, _squares(offset=2)), structure_score(content, _squares(offset=8))
    assert 0.2 < far < near < 0.95
    noise = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert abs(structure_score(content, noise)) < 0.1
    assert structure_score(content, torch.full((1, 3, 64, 64), 0.5)) == 0.0, "a flat result has no edges"


def test_structure_score_measures_at_the_results_size():
    big = _squares(size=128)
    assert structure_score(big, resize(big, 64, 64)) > 0.97


def test_style_ratios_are_one_for_the_content_and_near_zero_for_the_style_itself(stylizer):
    content = image_to_tensor(demo_image("content/cat_chelsea.png", 64))
    style = image_to_tensor(demo_image("style/texture_zebra.jpg", 64))
    own = style_ratios(stylizer.extractor, content, content, style)
    assert own.gram == pytest.approx(1.0) and own.mrf == pytest.approx(1.0)
    framed = resize(style, *content.shape[-2:])  # the style in the content's frame: all style, no content
    other = style_ratios(stylizer.extractor, framed, content, style)
    assert other.gram < 0.1 and other.mrf < 0.5
