"""`stylebatch report`: a results table as an HTML page of cards (and optionally one PNG sheet).

Rows are read from the table in batches and written to the page as they come, so the page
is never held in memory; each image is read and decoded at most once (content and style
thumbnails are cached, see `pipeline.reports.thumbnails`), and its thumbnail serves both the page
and the PNG. The page is self-contained: thumbnails are embedded as data URIs. Rows are
ordered by style, run and row; the page's toolbar regroups, re-sorts and filters them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from rich.progress import Progress

from pipeline.batch.results import STATUSES, read_results
from pipeline.reports.contact_sheet import ContactSheet
from pipeline.reports.drawing import encode_sheet
from pipeline.reports.html import ReportPage, card
from pipeline.reports.thumbnails import Thumbnail, Thumbnailer
from pipeline.storage.store import Location, Storage
from stylecore.files import atomic_file, write_atomically
from stylecore.imageio import image_format_for

BATCH_ROWS = 256


def write_report(results: Location, output: Path, *, png: Path | None = None, run_id: str | None = None,
                 s3_endpoint: str | None = None, thumb_size: int = 160,
                 progress: Progress | None = None) -> dict[str, int]:
    """Write the page to `output` (and the sheet to `png`); returns the number of rows per status.

    ValueError if there are no rows (for `run_id`, if given). `progress` gets a task over the rows.
    """
    if png is not None:
        image_format_for(png.name)
    storage = Storage(s3_endpoint)
    table = read_results(storage, results)
    if run_id:
        table = table.filter(pc.equal(table["run_id"], run_id))
    if table.num_rows == 0:
        raise ValueError(f"no results found in {results}" + (f" for run {run_id}" if run_id else ""))
    table = table.sort_by([("style", "ascending"), ("run_id", "ascending"), ("row", "ascending")])
    counts = status_counts(table)
    page = ReportPage()
    sheet = ContactSheet(f"stylebatch contact sheet: {results}", table.num_rows, thumb_size) if png else None
    thumbnails = Thumbnailer(storage)
    input_size = thumb_size * 3 // 5
    if progress is None:
        progress = Progress(disable=True)
    task = progress.add_task("thumbnails", total=table.num_rows)
    with atomic_file(output) as handle:
        handle.write(page.head(str(results), run_id, counts).encode())
        for index, row in enumerate(_rows(table)):
            content = thumbnails.recurring(row["content"], input_size)
            style = thumbnails.recurring(row["style"], input_size)
            result = (Thumbnail.missing("not written: the row failed") if row["status"] == "failed"
                      else thumbnails.make(row["output"], thumb_size))
            handle.write(card(row, content, style, result).encode())
            if sheet is not None:
                sheet.add(index, row, content, style, result)
            progress.advance(task)
        handle.write(page.tail().encode())
    if sheet is not None and png is not None:
        write_atomically(png, encode_sheet(sheet.image, png.name, sheet.metadata))
    return counts


def status_counts(table: pa.Table) -> dict[str, int]:
    """Rows per status, the known statuses first and in their usual order."""
    found: dict[str, int] = {}
    for status in table["status"].to_pylist():
        found[status or "unknown"] = found.get(status or "unknown", 0) + 1
    return {status: found.pop(status) for status in STATUSES if status in found} | dict(sorted(found.items()))


def _rows(table: pa.Table) -> Iterator[dict[str, Any]]:
    for batch in table.to_batches(max_chunksize=BATCH_ROWS):
        yield from batch.to_pylist()
