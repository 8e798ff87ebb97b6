"""`stylebatch status`: each run's rows by status, how the run ended, and its failures.

The results are read a record batch at a time and only counts per run are kept, so a table of
any length is summarised in constant memory; each run's record (`pipeline.batch.runs`) adds
its manifest's row count, its start and end, and how it ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.markup import escape

from pipeline.batch.results import STATUSES, iter_results
from pipeline.batch.runs import RunRecord, read_runs
from pipeline.storage.store import Location, Storage

MAX_LISTED_FAILURES = 50


@dataclass
class RunCounts:
    """What the results table says of one run."""

    statuses: dict[str, int] = field(default_factory=dict)
    worse_than_start: int = 0  # ok rows whose image ended above its finest level's starting loss
    started: datetime | None = None
    finished: datetime | None = None


def print_status(out: Console, results: Location, run_id: str | None = None, s3_endpoint: str | None = None) -> bool:
    """Print one line per run (outcome, manifest rows, counts per status, rows worse than their start,
    start, seconds), notes on runs that did not finish, then the failures, on `out`.

    False if there is nothing for `run_id` (or at all) in `results`.
    """
    storage = Storage(s3_endpoint)
    runs: dict[str, RunCounts] = {}
    failures: list[tuple[str, int, str]] = []
    failed_total = 0
    columns = ["run_id", "row", "status", "error", "started_at", "finished_at", "worse_than_start"]
    for batch in iter_results(storage, results, columns):
        if run_id:
            batch = batch.filter(pc.equal(batch["run_id"], run_id))
        failed_total += _count(batch, runs, failures)
    records = {record.run_id: record for record in read_runs(storage, results)
               if not run_id or record.run_id == run_id}
    if not runs and not records:
        return False
    for line in _run_lines(runs, records):
        out.print(line, highlight=False)
    for note in _notes(records):
        out.print(note, highlight=False)
    for run, row, error in sorted(failures):
        out.print(f"[red]failed[/] run {run} row {row}: {escape(error)}", highlight=False)
    if failed_total > len(failures):
        out.print(f"... and {failed_total - len(failures)} more failed row(s): read them from the results table, "
                  f"e.g. pandas.read_parquet('{results}').query('status == \"failed\"')", highlight=False)
    return True


def _count(batch: pa.RecordBatch, runs: dict[str, RunCounts], failures: list[tuple[str, int, str]]) -> int:
    """Add a record batch's rows to `runs` (aggregated by Arrow, not row by row); keep its first
    failures; return how many of its rows failed."""
    table = pa.Table.from_batches([batch])
    table = table.set_column(table.schema.get_field_index("worse_than_start"), "worse_than_start",
                             pc.cast(pc.fill_null(table["worse_than_start"], False), pa.int64()))
    grouped = table.group_by(["run_id", "status"]).aggregate(
        [("row", "count"), ("started_at", "min"), ("finished_at", "max"), ("worse_than_start", "sum")])
    for run, status, count, started, finished, worse in zip(*(grouped[name].to_pylist() for name in (
            "run_id", "status", "row_count", "started_at_min", "finished_at_max", "worse_than_start_sum")),
            strict=True):
        counts = runs.setdefault(run, RunCounts())
        counts.statuses[status] = counts.statuses.get(status, 0) + count
        counts.worse_than_start += worse or 0
        if started is not None and (counts.started is None or started < counts.started):
            counts.started = started
        if finished is not None and (counts.finished is None or finished > counts.finished):
            counts.finished = finished
    failed = table.filter(pc.equal(table["status"], "failed"))
    wanted = failed.slice(0, max(0, MAX_LISTED_FAILURES - len(failures)))
    failures.extend(zip(wanted["run_id"].to_pylist(), wanted["row"].to_pylist(),
                        (error or "" for error in wanted["error"].to_pylist()), strict=True))
    return int(failed.num_rows)


def _run_lines(runs: dict[str, RunCounts], records: dict[str, RunRecord]) -> list[str]:
    """One line per run (any terminal width, a pipe, grep): its outcome, manifest rows, rows recorded by
    status, rows worse than their start, start and duration."""
    lines = []
    for run in sorted(runs.keys() | records.keys()):
        counts, record = runs.get(run, RunCounts()), records.get(run)
        started = record.started_at if record else counts.started
        ended = (record.ended_at or (record.heartbeat_at if record.state() != "running" else None)) if record \
            else counts.finished
        recorded = ", ".join(f"{counts.statuses.get(status, 0)} {status}" for status in STATUSES)
        worse = f" ({counts.worse_than_start} worse than their start)" if counts.worse_than_start else ""
        rows = f"{record.rows} manifest rows" if record else "manifest rows unknown"
        timing = f"; started {_time(started)} UTC" if started else ""
        if started and ended:
            timing += f", {(ended - started).total_seconds():.0f} s"
        lines.append(f"run [bold]{run}[/]: {_outcome(record)}, {rows}: {recorded}{worse}{timing}")
    return lines


def _notes(records: dict[str, RunRecord]) -> list[str]:
    """What the table's columns leave out: since when a run that is not finished gave no sign of life."""
    return [f"run {record.run_id}: not finished; no sign of life from its driver since "
            f"{_time(record.heartbeat_at)} UTC (killed?); the next run on these results recovers its rows"
            for record in records.values() if record.state() == "not finished"]


def _outcome(record: RunRecord | None) -> str:
    if record is None:
        return "no run record"
    state = record.state()
    return {"finished": "[green]finished[/]", "running": "[yellow]running[/]", "not finished": "[red]not finished[/]",
            "interrupted": "[yellow]interrupted[/]", "stopped": "[red]stopped[/]"}.get(state, state)


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else ""
