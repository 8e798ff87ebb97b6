"""The exact objective that compares runs made with different matching settings."""

from __future__ import annotations

import torch

from stylecore import FusionParams, image_to_tensor
from stylecore.images import fit_long_side, resize
from stylecore.losses import content_loss, gram_loss, gram_matrix, mrf_loss
from stylecore.metrics import exact_objective
from stylecore.patches import MRFTarget, PatchBank
from tests.demo_images import demo_image


def test_exact_objective_is_eq1_with_exact_matching_at_the_finest_level(stylizer):
    """Whatever matching made the image, its objective is recomputed from the loss functions
    with an exact nearest-patch search, the style sized to the image's longest side."""
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
    assert torch.isclose(torch.tensor(terms.global_), params.alpha_global * expected_global, rtol=1e-5)
    assert torch.isclose(torch.tensor(terms.local), params.alpha_local * expected_local, rtol=1e-5)
    assert torch.isclose(torch.tensor(terms.content), params.alpha_content * expected_content, rtol=1e-5)
    assert terms.tv == 0
