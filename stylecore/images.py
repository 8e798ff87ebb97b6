"""Images as tensors: PIL RGB images to (1, 3, H, W) tensors in 0..1 and back, and resizing.

Decoding and encoding files is `stylecore.imageio` (torch-free).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB image -> float tensor of shape (1, 3, H, W) in 0..1."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    """Float tensor (1, 3, H, W) or (3, H, W) in 0..1 -> PIL RGB image (values clamped)."""
    if tensor.dim() == 4:
        tensor = tensor[0]
    array = tensor.detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, mode="RGB")


def resize(tensor: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Antialiased bilinear resize of a (N, C, H, W) tensor, on its own device."""
    if tensor.shape[-2:] == (height, width):
        return tensor
    return F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False,
                         antialias=True)


def fit_long_side(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(H, W) scaled so the longer side is `long_side`, keeping the aspect ratio."""
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))
