"""Laying out a comparison as one image: a row of inputs and methods, a row for the strength sweep.

Each tile is its image over a caption (label, alphas, the three distances). The PNG also
carries what it shows as JSON (see `pipeline.reports.drawing.encode_sheet`): every tile's label,
alphas, distances, pixel box and caption box, so the numbers on the sheet can be read back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image, ImageDraw

from pipeline.reports.drawing import BACKGROUND, INK, MUTED, draw_lines, fitted, line_height, text_width
from stylecore import FusionParams, tensor_to_image
from stylecore.metrics import Distances

MARGIN, GAP = 12, 10
TITLE_SIZE, LABEL_SIZE, CAPTION_SIZE = 15, 13, 12


@dataclass(frozen=True)
class Tile:
    """A synthesised (or input) image with its distances to the style and the content."""

    label: str
    image: torch.Tensor  # (1, 3, H, W) RGB 0..1
    distances: Distances
    params: FusionParams | None  # None for the content and style tiles
    seconds: float


@dataclass(frozen=True)
class SheetText:
    """The words around the tiles: a title, a heading per row and the settings legend."""

    title: str
    row_headings: tuple[str, str]
    legend: list[str]


def tile_record(tile: Tile) -> dict[str, Any]:
    """What a tile shows, as plain data (for the PNG's metadata and the printed table)."""
    params = tile.params
    return {"label": tile.label,
            "alpha_global": params.alpha_global if params else None,
            "alpha_local": params.alpha_local if params else None,
            "alpha_content": params.alpha_content if params else None,
            "style_strength": params.style_strength if params else None,
            "local_normalization": params.local_normalization if params else None,
            "init": params.init if params else None,
            "content_layer": params.content_layer if params else None,
            "style_size_exponent": params.style_size_exponent if params else None,
            "gram": tile.distances.gram, "mrf": tile.distances.mrf, "content": tile.distances.content,
            "seconds": round(tile.seconds, 2)}


def _box(height: int, width: int, tile_width: int) -> tuple[int, int]:
    """(width, height) of the box a result of height x width is shown in: its aspect, longest side tile_width."""
    if width >= height:
        return tile_width, max(1, round(tile_width * height / width))
    return max(1, round(tile_width * width / height)), tile_width


def caption(tile: Tile, name: str | None = None) -> list[tuple[str, tuple[int, int, int]]]:
    """The lines under a tile: label, alphas (or the file name), and its three distances."""
    if tile.params is None:
        second = name or ""
    else:
        params = tile.params
        alpha_local = f"{params.alpha_local:.1e}" if 0 < params.alpha_local < 0.01 else f"{params.alpha_local:g}"
        strength = f" · S {params.style_strength:g}" if params.style_strength != 1 else ""
        second = f"a1 {params.alpha_global:g} · a2 {alpha_local} ({params.local_normalization}) · " \
                 f"a3 {params.alpha_content:g}{strength}"
    distances = tile.distances
    return [(tile.label, INK), (second, MUTED), (f"Gram {distances.gram:.3g}", INK),
            (f"MRF {distances.mrf:.3g}", INK), (f"content {distances.content:.3g}", INK)]


def render(top: list[Tile], sweep: list[Tile], text: SheetText, tile_width: int,
           names: dict[str, str]) -> tuple[Image.Image, dict[str, Any]]:
    """The sheet and its metadata. `top`: content, style, then the methods; `sweep`: may be empty."""
    columns = max(len(top) + 1, len(sweep))
    captions = {id(tile): caption(tile, names.get(tile.label)) for tile in (*top, *sweep)}
    widest = max(text_width(line, CAPTION_SIZE) for lines in captions.values() for line, _ in lines)
    column_width = max(tile_width, widest + 4, *(text_width(line, CAPTION_SIZE) + 4 for line in text.legend))
    image_width, image_height = _box(top[-1].image.shape[-2], top[-1].image.shape[-1], tile_width)
    caption_height = 5 * line_height(CAPTION_SIZE)
    row_height = line_height(LABEL_SIZE) + max(image_height + 4 + caption_height,
                                               len(text.legend) * line_height(CAPTION_SIZE))
    rows = [top, sweep] if sweep else [top]
    sheet_width = 2 * MARGIN + columns * column_width + (columns - 1) * GAP
    title_height = line_height(TITLE_SIZE) + GAP
    sheet = Image.new("RGB", (sheet_width, MARGIN * 2 + title_height + len(rows) * (row_height + GAP)),
                      BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw_lines(draw, MARGIN, MARGIN, [(text.title, INK)], TITLE_SIZE, sheet_width - 2 * MARGIN)
    records = []
    y = MARGIN + title_height
    for heading, tiles in zip(text.row_headings, rows, strict=False):  # no sweep row: one heading unused
        draw_lines(draw, MARGIN, y, [(heading, MUTED)], LABEL_SIZE, sheet_width - 2 * MARGIN)
        image_top = y + line_height(LABEL_SIZE)
        for column, tile in enumerate(tiles):
            x = MARGIN + column * (column_width + GAP)
            picture = fitted(tensor_to_image(tile.image), image_width, image_height)
            left = x + (column_width - image_width) // 2
            sheet.paste(picture, (left, image_top))
            draw_lines(draw, x, image_top + image_height + 4, captions[id(tile)], CAPTION_SIZE, column_width)
            records.append({**tile_record(tile), "box": [left, image_top, image_width, image_height],
                            "caption_box": [x, image_top + image_height + 4, column_width, caption_height]})
        if tiles is top:
            legend_x = MARGIN + len(top) * (column_width + GAP)
            draw_lines(draw, legend_x, image_top, [(line, MUTED) for line in text.legend], CAPTION_SIZE,
                       column_width)
        y += row_height + GAP
    return sheet, {"title": text.title, "legend": text.legend, "tiles": records}
