"""Image decoding and tensor conversion: any common file in, RGB tensors out.

Decoding is strict: a file that is not an image, is truncated or corrupt, or would
decode to more pixels than `max_pixels` raises `ImageError` naming the file and the
reason, before any large allocation happens.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import BinaryIO, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

# 64 megapixels: a 8000x8000 photo still loads, a decompression bomb does not.
DEFAULT_MAX_PIXELS = 64_000_000

ImageSource = Union[str, "os.PathLike[str]", bytes, BinaryIO]

_SIXTEEN_BIT_GRAY = {"I;16", "I;16L", "I;16B", "I;16N"}
_WITH_ALPHA = {"RGBA", "RGBa", "LA", "La", "PA"}


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file and the reason."""


def load_image(source: ImageSource, *, name: str | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode `source` (a path, bytes or a binary file) into an upright 8-bit RGB image.

    Handles grayscale, palette, alpha (composited over white), CMYK, 16-bit and
    EXIF-rotated images; colour profiles are converted to sRGB.
    """
    label = name or _describe(source)
    fp: BinaryIO | str | os.PathLike[str] = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(fp)
    except FileNotFoundError:
        raise ImageError(f"{label}: file not found") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image, or a format Pillow cannot read") from None
    except Image.DecompressionBombError as error:
        raise ImageError(f"{label}: refused, too many pixels ({error})") from None
    except OSError as error:
        raise ImageError(f"{label}: cannot open ({error})") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(f"{label}: refused, {width}x{height} is {width * height:,} pixels, "
                             f"more than the limit of {max_pixels:,}")
        if width < 1 or height < 1:
            raise ImageError(f"{label}: empty image ({width}x{height})")
        try:
            image.load()
            upright = ImageOps.exif_transpose(image)
            return _to_rgb(upright)
        except (OSError, SyntaxError, ValueError, EOFError, IndexError) as error:
            raise ImageError(f"{label}: corrupt or truncated image data ({error})") from None


def _describe(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "name", "<image bytes>")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit sRGB, keeping the full range of 16-bit data."""
    if image.mode in _SIXTEEN_BIT_GRAY or image.mode == "I":
        image = _sixteen_bit_to_l(image)
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float32)
        scale = 255.0 if values.max(initial=0.0) <= 1.0 else 1.0
        image = Image.fromarray(np.clip(values * scale, 0, 255).round().astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _WITH_ALPHA:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "RGBA", "CMYK"):
        converted = _icc_to_srgb(image, icc)
        if converted is not None:
            return converted
    return image.convert("RGB")


def _sixteen_bit_to_l(image: Image.Image) -> Image.Image:
    values = np.asarray(image).astype(np.float64)
    return Image.fromarray((np.clip(values, 0, 65535) / 257.0).round().astype(np.uint8), mode="L")


def _icc_to_srgb(image: Image.Image, icc: bytes) -> Image.Image | None:
    """Colour-manage through the embedded profile; None if the profile is unusable."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        srgb = ImageCms.createProfile("sRGB")
        converted = ImageCms.profileToProfile(image.convert("RGB") if image.mode == "RGBA" else image,
                                              source, srgb, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None
    return converted


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
