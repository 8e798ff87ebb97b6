"""Results-table records of one row: what the job was, and how it ended.

Besides the table, a finished row's outcome travels with its output as metadata (S3 user
metadata, or extended attributes of a local file): the output then says which run made it,
so a later run can name that run when it skips the row, and can rebuild the record of a row
whose driver died between the output's write and the record's (`pipeline.batch.recovery`).
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from pipeline.batch.columns import parameter_values
from pipeline.batch.manifest import Job, RowError
from pipeline.batch.naming import params_json
from stylecore.params import FusionParams

STYLEBATCH_VERSION = version("stylebatch")
# Metadata keys written with every output (str -> str, small enough for S3's 2 KB limit).
RUN_KEY, ROW_KEY, OUTCOME_KEY = "stylebatch-run", "stylebatch-row", "stylebatch-outcome"
OUTCOME_COLUMNS = ("loss_global", "loss_local", "loss_content", "loss_total", "evaluations", "worse_than_start",
                   "rejected_steps", "load_seconds", "synthesis_seconds", "worker_host", "worker_node", "device",
                   "started_at", "stylebatch_version")


def utc_now() -> datetime:
    return datetime.now(UTC)


def job_record(job: Job, weights: str) -> dict[str, Any]:
    """The columns that describe a job: inputs, output and every parameter."""
    return {"row": job.row, "content": str(job.content), "style": str(job.style), "output": str(job.output),
            **_parameter_columns(job.params, weights)}


@functools.lru_cache(maxsize=1024)
def _parameter_columns(params: FusionParams, weights: str) -> dict[str, Any]:
    """The parameter part of a job's record, memoised (rows mostly share parameters); read-only."""
    return {**parameter_values(params), "weights": weights, "params": params_json(params),
            "stylebatch_version": STYLEBATCH_VERSION}


def invalid_record(error: RowError, weights: str, now: datetime | None = None) -> dict[str, Any]:
    """A row that failed validation. `now` (default: now) is its start and end."""
    now = now or utc_now()
    cells = error.cells
    return {"row": error.row, "content": _text(cells.get("content")), "style": _text(cells.get("style")),
            "output": _text(cells.get("output")), "weights": weights, "status": "failed",
            "stylebatch_version": STYLEBATCH_VERSION,
            "error": f"invalid row: column {error.column}: {error.reason}", "started_at": now, "finished_at": now}


def skipped_record(job: Job, weights: str, metadata: dict[str, str], now: datetime | None = None) -> dict[str, Any]:
    """A row whose output exists: named after the run that wrote it, if the output says."""
    now = now or utc_now()
    previous_run = metadata.get(RUN_KEY)
    reason = (f"output exists, finished in run {previous_run}" if previous_run
              else "output exists (not written by a stylebatch run that labels its outputs); "
                   "pass --force to overwrite it")
    return _ended(job_record(job, weights), "skipped", reason, now)


def failed_record(job: Job, weights: str, error: str, now: datetime | None = None) -> dict[str, Any]:
    return _ended(job_record(job, weights), "failed", error, now or utc_now())


def _ended(record: dict[str, Any], status: str, error: str, now: datetime) -> dict[str, Any]:
    """`record` (updated in place, not copied: a driver makes one per row) ended at `now` with `status`."""
    record["status"], record["error"], record["started_at"], record["finished_at"] = status, error, now, now
    return record


def output_metadata(run_id: str, record: dict[str, Any]) -> dict[str, str]:
    """What a finished row's output carries: its run, its row and its outcome."""
    outcome = {name: record.get(name) for name in OUTCOME_COLUMNS}
    return {RUN_KEY: run_id, ROW_KEY: str(record["row"]),
            OUTCOME_KEY: json.dumps(outcome, default=_iso, separators=(",", ":"))}


def recovered_record(dispatched: dict[str, Any], metadata: dict[str, str]) -> dict[str, Any] | None:
    """The ok record of a dispatched row rebuilt from its output's metadata, if the output was
    written by the same run for the same row (else None: the row did not finish)."""
    if metadata.get(RUN_KEY) != dispatched.get("run_id") or metadata.get(ROW_KEY) != str(dispatched["row"]):
        return None
    try:
        outcome = json.loads(metadata.get(OUTCOME_KEY, "{}"))
    except ValueError:
        outcome = {}
    started = outcome.get("started_at")
    return dispatched | {name: outcome.get(name) for name in OUTCOME_COLUMNS} | {
        "status": "ok", "started_at": datetime.fromisoformat(started) if started else None,
        "error": None, "finished_at": None}


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
