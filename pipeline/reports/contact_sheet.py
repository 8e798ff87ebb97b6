"""The report as one PNG contact sheet: a grid of cells, one per results row.

Each cell shows the content and style thumbnails stacked left of the result, then the row,
run, status, style and either the final loss and time or the error. The canvas is sized up
front and cells are pasted as rows stream by; past `max_cells` rows the sheet says how many
it leaves out (the HTML report has them all).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PIL import Image, ImageDraw

from pipeline.reports.drawing import BACKGROUND, FAILED, INK, MUTED, draw_lines, fitted, line_height, placeholder
from pipeline.reports.thumbnails import Thumbnail, file_name

COLUMNS = 5
MARGIN, GAP, TITLE_SIZE, CAPTION_SIZE = 12, 12, 14, 11
CAPTION_LINES = 3


class ContactSheet:
    """A canvas for `min(rows, max_cells)` cells of `thumb_size` px results."""

    def __init__(self, title: str, rows: int, thumb_size: int = 160, max_cells: int = 200) -> None:
        self.thumb_size = thumb_size
        self.input_size = thumb_size // 2
        self.cells = min(rows, max_cells)
        self.cell_width = self.input_size + 4 + thumb_size
        self.cell_height = thumb_size + 4 + CAPTION_LINES * line_height(CAPTION_SIZE)
        columns = max(1, min(COLUMNS, self.cells))
        grid_rows = -(-self.cells // columns)
        self.columns = columns
        self.top = MARGIN + line_height(TITLE_SIZE) * 2
        width = 2 * MARGIN + columns * self.cell_width + (columns - 1) * GAP
        height = self.top + grid_rows * (self.cell_height + GAP) + MARGIN
        self.image = Image.new("RGB", (width, height), BACKGROUND)
        self._draw = ImageDraw.Draw(self.image)
        note = f"showing the first {self.cells} of {rows} rows" if rows > self.cells else f"{rows} rows"
        draw_lines(self._draw, MARGIN, MARGIN, [(title, INK), (note, MUTED)], TITLE_SIZE, width - 2 * MARGIN)
        self.metadata: dict[str, Any] = {"title": title, "rows": rows, "cells": []}

    def add(self, index: int, row: Mapping[str, Any], content: Thumbnail, style: Thumbnail,
            result: Thumbnail) -> None:
        """Paste the cell of the `index`-th row shown (rows past the sheet's capacity are ignored)."""
        if index >= self.cells:
            return
        x = MARGIN + (index % self.columns) * (self.cell_width + GAP)
        y = self.top + (index // self.columns) * (self.cell_height + GAP)
        half = (self.thumb_size - 4) // 2
        self.image.paste(self._picture(content, self.input_size, half), (x, y))
        self.image.paste(self._picture(style, self.input_size, half), (x, y + half + 4))
        self.image.paste(self._picture(result, self.thumb_size, self.thumb_size), (x + self.input_size + 4, y))
        status = row.get("status") or "unknown"
        if status == "failed":
            outcome = (row.get("error") or "failed", FAILED)
        elif row.get("loss_total") is not None:
            seconds = row.get("synthesis_seconds")
            outcome = (f"loss {row['loss_total']:.3g}" + (f" · {seconds:.1f} s" if seconds is not None else ""),
                       INK)
        else:
            outcome = (status, MUTED)
        lines = [(f"row {row.get('row')} · {status} · run {row.get('run_id') or ''}", INK),
                 (f"style {file_name(row.get('style'))}", MUTED), outcome]
        draw_lines(self._draw, x, y + self.thumb_size + 4, lines, CAPTION_SIZE, self.cell_width)
        self.metadata["cells"].append({"run_id": row.get("run_id"), "row": row.get("row"), "status": status,
                                       "box": [x, y, self.cell_width, self.cell_height]})

    @staticmethod
    def _picture(thumbnail: Thumbnail, width: int, height: int) -> Image.Image:
        if thumbnail.image is None:
            return placeholder(width, height, thumbnail.reason)
        return fitted(thumbnail.image, width, height)
