"""The demo images shipped in manifests/images, for tests."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from stylecore import load_image

IMAGES = Path(__file__).resolve().parents[1] / "manifests" / "images"


def demo_image(relative: str, long_side: int | None = None) -> Image.Image:
    """A shipped demo image (e.g. 'content/cat_chelsea.png'), optionally shrunk to `long_side`."""
    image = load_image(IMAGES / relative)
    if long_side is not None:
        image.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    return image
