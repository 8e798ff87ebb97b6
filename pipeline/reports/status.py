"""`stylebatch status`: what a results table says, by run and status, with every failure."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.batch.results import STATUSES, read_results
from pipeline.storage.store import Location, Storage


def print_status(out: Console, results: Location, run_id: str | None = None, s3_endpoint: str | None = None) -> bool:
    """Print counts per run and status, then the failures, on `out`; False if there are no results."""
    table = read_results(Storage(s3_endpoint), results,
                         ["status", "error", "content", "style", "output", "started_at", "finished_at"])
    if run_id:
        table = table.filter(pc.equal(table["run_id"], run_id))
    if table.num_rows == 0:
        return False
    out.print(_counts_table(table))
    failed = table.filter(pc.equal(table["status"], "failed")).sort_by([("run_id", "ascending"),
                                                                         ("row", "ascending")])
    for run, row, error in zip(failed["run_id"].to_pylist(), failed["row"].to_pylist(),
                               failed["error"].to_pylist(), strict=True):
        out.print(f"[red]failed[/] run {run} row {row}: {escape(error or '')}", highlight=False)
    return True


def _counts_table(table: pa.Table) -> Table:
    grouped = table.group_by(["run_id", "status"]).aggregate([("row", "count")])
    counts: dict[str, dict[str, int]] = {}
    for run, status, count in zip(grouped["run_id"].to_pylist(), grouped["status"].to_pylist(),
                                  grouped["row_count"].to_pylist(), strict=True):
        counts.setdefault(run, {})[status] = count
    spans = table.group_by("run_id").aggregate([("started_at", "min"), ("finished_at", "max")])
    times = {run: (start, end) for run, start, end in zip(spans["run_id"].to_pylist(),
                                                          spans["started_at_min"].to_pylist(),
                                                          spans["finished_at_max"].to_pylist(), strict=True)}
    view = Table("run", "rows", *STATUSES, "started (UTC)", "seconds")
    for run in sorted(counts):
        start, end = times[run]
        seconds = f"{(end - start).total_seconds():.0f}" if start and end else ""
        view.add_row(run, str(sum(counts[run].values())), *(str(counts[run].get(s, 0)) for s in STATUSES),
                     start.strftime("%Y-%m-%d %H:%M:%S") if start else "", seconds)
    return view
