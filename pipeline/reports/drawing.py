"""Drawing helpers shared by the report's contact sheet and the comparison sheet (PIL only)."""

from __future__ import annotations

import functools
import io
import json
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from stylecore.imageio import image_format_for

BACKGROUND = (255, 255, 255)
INK = (34, 34, 34)
MUTED = (110, 110, 110)
FAILED = (180, 30, 30)
PLACEHOLDER_FILL = (232, 232, 232)
LINE_HEIGHT_FACTOR = 1.3


@functools.lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at `size` px (scalable where FreeType is available), so no system fonts are needed."""
    return ImageFont.load_default(size)


def line_height(size: int) -> int:
    return round(size * LINE_HEIGHT_FACTOR)


def text_width(text: str, size: int) -> int:
    """Width in pixels of `text` drawn at `size`."""
    left, _, right, _ = font(size).getbbox(text)
    return int(right - left)


def draw_lines(draw: ImageDraw.ImageDraw, x: int, y: int, lines: list[tuple[str, tuple[int, int, int]]],
               size: int, max_width: int | None = None) -> int:
    """Draw (text, colour) lines from (x, y) downwards, each cut to `max_width`; returns the y below them."""
    for text, colour in lines:
        draw.text((x, y), fit_text(text, size, max_width) if max_width else text, fill=colour, font=font(size))
        y += line_height(size)
    return y


def fit_text(text: str, size: int, max_width: int) -> str:
    """`text`, shortened in the middle with an ellipsis until it fits `max_width` pixels."""
    if text_width(text, size) <= max_width:
        return text
    keep = len(text)
    while keep > 1:
        keep -= 1
        shortened = text[: (keep + 1) // 2] + "…" + text[len(text) - keep // 2:]
        if text_width(shortened, size) <= max_width:
            return shortened
    return "…"


def fitted(image: Image.Image, width: int, height: int) -> Image.Image:
    """`image` scaled to fit a width x height box (aspect kept), centred on the background colour."""
    scale = min(width / image.width, height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    box = Image.new("RGB", (width, height), BACKGROUND)
    box.paste(image.convert("RGB").resize(size, Image.Resampling.LANCZOS),
              ((width - size[0]) // 2, (height - size[1]) // 2))
    return box


def placeholder(width: int, height: int, reason: str, size: int = 11) -> Image.Image:
    """A grey box that says no image is there and why (instead of a blank or broken picture)."""
    box = Image.new("RGB", (width, height), PLACEHOLDER_FILL)
    draw = ImageDraw.Draw(box)
    words = ["no image", *_wrap(reason, size, width - 8)]
    top = max(2, (height - len(words) * line_height(size)) // 2)
    draw_lines(draw, 4, top, [(line, MUTED) for line in words[: max(1, height // line_height(size))]], size,
               width - 8)
    return box


def _wrap(text: str, size: int, max_width: int) -> list[str]:
    """Greedy word wrap of `text` into lines at most `max_width` pixels wide."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if current and text_width(candidate, size) > max_width:
            lines.append(current)
            current = word
        else:
            current = candidate
    return [*lines, current] if current else lines


def encode_sheet(sheet: Image.Image, name: str, metadata: dict[str, Any] | None = None, colors: int = 0) -> bytes:
    """The sheet in the format `name`'s extension asks for; PNGs carry `metadata` as a JSON text chunk
    named 'stylebatch' so that tools (and tests) can read what the sheet shows.

    `colors` (2-256) stores a PNG as a dithered palette image, about a third of the size, for sheets
    that go into a repository; 0 keeps full colour.
    """
    image_format = image_format_for(name)
    buffer = io.BytesIO()
    if image_format == "PNG":
        info = PngInfo()
        if metadata is not None:
            info.add_text("stylebatch", json.dumps(metadata))
        if colors:
            sheet = sheet.quantize(colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
        sheet.save(buffer, format="PNG", optimize=True, pnginfo=info)
    else:
        sheet.convert("RGB").save(buffer, format=image_format,
                                  **({"quality": 90} if image_format in ("JPEG", "WEBP") else {}))
    return buffer.getvalue()
