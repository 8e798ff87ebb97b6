"""Colour preservation by luminance-only transfer (Gatys et al. 2017, the paper's ref [12]).

Stylize the luminance only: the content's Y and the style's Y (its mean and spread matched
to the content's, so the style's tones do not shift the content's) each as a grey RGB image;
then put the result's Y together with the content's chroma. YCbCr is ITU-R BT.601 full
range (JPEG's), chroma centred on 0.5 so that every channel of an RGB 0..1 image is in 0..1.
Images are (N, 3, H, W) RGB 0..1 tensors.
"""

from __future__ import annotations

import torch

from stylecore.images import resize

# BT.601 full range (JFIF): rows give Y, Cb - 0.5, Cr - 0.5 from R, G, B.
RGB_TO_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
CHROMA_OFFSET = (0.0, 0.5, 0.5)


def _matrix(like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(RGB_TO_YCBCR, dtype=like.dtype, device=like.device)


def _offset(like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(CHROMA_OFFSET, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 3, H, W) Y, Cb, Cr (BT.601 full range, chroma centred on 0.5)."""
    return torch.einsum("ij,njhw->nihw", _matrix(rgb), rgb) + _offset(rgb)


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) Y, Cb, Cr -> (N, 3, H, W) RGB; the inverse of `rgb_to_ycbcr` (not clamped)."""
    inverse = torch.linalg.inv(_matrix(ycbcr).double()).to(ycbcr.dtype)
    return torch.einsum("ij,njhw->nihw", inverse, ycbcr - _offset(ycbcr))


def luminance_image(rgb: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """The luminance of `rgb` as a grey (N, 3, H, W) image in 0..1.

    With `reference` (another RGB image, any size), the luminance is first shifted and
    scaled to the reference's luminance mean and standard deviation (Gatys et al.'s
    luminance matching of the style to the content).
    """
    luma = rgb_to_ycbcr(rgb)[:, :1]
    if reference is not None:
        target = rgb_to_ycbcr(reference)[:, :1]
        spread = luma.std()
        scale = target.std() / spread if spread > 0 else luma.new_zeros(())
        luma = (luma - luma.mean()) * scale + target.mean()
    return luma.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def with_content_color(result: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """`result`'s luminance with `content`'s chroma (the content resized to the result's size), RGB 0..1."""
    chroma = rgb_to_ycbcr(resize(content, result.shape[-2], result.shape[-1]))[:, 1:]
    luma = rgb_to_ycbcr(result)[:, :1]
    return ycbcr_to_rgb(torch.cat([luma, chroma], dim=1)).clamp(0, 1)
