"""Image files in and out, without torch: strict decoding to RGB, and encoding by file extension.

Decoding is strict: a file that is not an image, is truncated or corrupt, or would
decode to more pixels than `max_pixels` raises `ImageError` naming the file and the
reason, before any large allocation happens. Grayscale, palette, alpha (over white),
CMYK, 16-bit and EXIF-rotated images all come out upright 8-bit sRGB. Torch-free, so
that reports and the batch driver can read and write images without loading torch;
`stylecore.images` turns the decoded images into tensors.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

# 64 megapixels: a 8000x8000 photo still loads, a decompression bomb does not.
DEFAULT_MAX_PIXELS = 64_000_000
# Quality of lossy outputs (JPEG, WebP): visually lossless for stylized images.
LOSSY_QUALITY = 95

ImageSource = Union[str, "os.PathLike[str]", bytes, BinaryIO]

_SIXTEEN_BIT_GRAY = {"I;16", "I;16L", "I;16B", "I;16N"}
_WITH_ALPHA = {"RGBA", "RGBa", "LA", "La", "PA"}


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file and the reason."""


def load_image(source: ImageSource, *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_side: int | None = None) -> Image.Image:
    """Decode `source` (a path, bytes or a binary file) into an upright 8-bit RGB image.

    Colour profiles are converted to sRGB. `max_side` shrinks the image to fit a
    `max_side` x `max_side` box (aspect kept), decoding JPEGs at reduced scale to begin
    with: what a thumbnail needs. `name` names the file in errors (default: its path).
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
            if max_side is not None:
                image.draft("RGB", (max_side, max_side))
            image.load()
            rgb = _to_rgb(ImageOps.exif_transpose(image))
        except (OSError, SyntaxError, ValueError, EOFError, IndexError) as error:
            raise ImageError(f"{label}: corrupt or truncated image data ({error})") from None
    if max_side is not None:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return rgb


def image_format_for(name: str) -> str:
    """Pillow format for a file name's extension; ValueError for an unknown or unwritable one."""
    extension = os.path.splitext(name)[1].lower()
    image_format = Image.registered_extensions().get(extension)
    if image_format is None or image_format not in Image.SAVE:
        raise ValueError(f"{name}: unknown or unwritable image extension {extension or '(none)'!r}; "
                         "use .png, .jpg, .webp, ...")
    return image_format


def encode_image(image: Image.Image, name: str) -> bytes:
    """The bytes of `image` in the format `name`'s extension asks for."""
    buffer = io.BytesIO()
    image_format = image_format_for(name)
    options = {"quality": LOSSY_QUALITY} if image_format in ("JPEG", "WEBP") else {}
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _describe(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", "<image bytes>"))


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
