"""Colour preservation: the YCbCr conversions, luminance matching, and a real synthesis that keeps
the content's chroma (Gatys et al. 2017's luminance-only transfer)."""

from __future__ import annotations

import torch

from stylecore import FusionParams, image_to_tensor
from stylecore.color import luminance_image, rgb_to_ycbcr, with_content_color, ycbcr_to_rgb
from stylecore.images import resize
from tests.demo_images import demo_image


def test_ycbcr_round_trips_and_matches_jpegs_convention():
    rgb = torch.rand(2, 3, 7, 5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-5)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert torch.allclose(rgb_to_ycbcr(red).flatten(), torch.tensor([0.299, 0.5 - 0.168736, 1.0]), atol=1e-6)
    grey = torch.full((1, 3, 2, 2), 0.25)
    assert torch.allclose(rgb_to_ycbcr(grey), torch.tensor([0.25, 0.5, 0.5]).view(1, 3, 1, 1).expand(1, 3, 2, 2))


def test_luminance_image_is_grey_and_matched_to_the_reference():
    style = image_to_tensor(demo_image("style/starry_night_vangogh.jpg", 64))
    content = image_to_tensor(demo_image("content/cat_chelsea.png", 64))
    plain = luminance_image(style)
    assert plain.shape == style.shape
    assert torch.equal(plain[:, 0], plain[:, 1]) and torch.equal(plain[:, 0], plain[:, 2])
    assert torch.allclose(plain[:, :1], rgb_to_ycbcr(style)[:, :1].clamp(0, 1))
    matched = luminance_image(style, content)[:, 0]
    content_luma = rgb_to_ycbcr(content)[:, 0]
    assert abs(float(matched.mean() - content_luma.mean())) < 0.01
    assert abs(float(matched.std() - content_luma.std())) < 0.01


def test_with_content_color_keeps_the_results_luminance_and_the_contents_chroma():
    content = image_to_tensor(demo_image("content/still_life_coffee.png", 48))
    result = luminance_image(torch.rand(1, 3, 24, 36, generator=torch.Generator().manual_seed(1)))
    colored = with_content_color(result, content)
    assert colored.shape == result.shape
    ycc, expected_chroma = rgb_to_ycbcr(colored), rgb_to_ycbcr(resize(content, 24, 36))[:, 1:]
    # Equal up to the clamp to 0..1 of the few combinations outside the RGB cube.
    assert float((ycc[:, :1] - rgb_to_ycbcr(result)[:, :1]).abs().mean()) < 0.01
    assert float((ycc[:, 1:] - expected_chroma).abs().mean()) < 0.01


def test_preserve_color_keeps_the_contents_chroma_in_a_real_synthesis(stylizer):
    """Cat x Starry Night at 64 px: without colour preservation the result takes the painting's blues
    and yellows; with it, its chroma is the cat's (and its luminance still moved off the content's)."""
    content = image_to_tensor(demo_image("content/cat_chelsea.png", 64))
    style = image_to_tensor(demo_image("style/starry_night_vangogh.jpg", 64))
    params = FusionParams(size=None, levels=1, iterations=30)
    plain = stylizer(content, style, params).image
    kept = stylizer(content, style, params.with_overrides(preserve_color=True)).image
    assert kept.shape == plain.shape == content.shape

    def chroma_error(image: torch.Tensor) -> float:
        return float((rgb_to_ycbcr(image)[:, 1:] - rgb_to_ycbcr(content)[:, 1:]).abs().mean())

    assert chroma_error(kept) < 0.005 and chroma_error(plain) > 0.05
    luma_change = float((rgb_to_ycbcr(kept)[:, 0] - rgb_to_ycbcr(content)[:, 0]).abs().mean())
    assert luma_change > 0.02, "the luminance must still be stylized"
