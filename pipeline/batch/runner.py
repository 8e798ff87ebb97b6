"""The driver of `stylebatch submit`: validate, skip what is done, stream jobs to Ray workers, record.

The driver holds no images and no more than a few seconds of results: it reads the
manifest twice as a stream (once to validate everything before any compute, once to
dispatch), keeps at most two jobs per worker in flight, and flushes results to Parquet
as they arrive.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import ray

from pipeline.batch.manifest import Job, RowError, RowValidator, check_columns, read_rows
from pipeline.batch.results import ResultsWriter, finished_outputs
from pipeline.batch.cluster_state import read_cluster_state
from pipeline.batch.planning import PlanOptions, plan_workers
from pipeline.batch.pool import DEFAULT_WAIT_FOR_WORKERS_SECONDS, WorkerPool
from pipeline.storage.store import Location, Storage
from pipeline.batch.worker import STYLEBATCH_VERSION, job_record, utc_now
from stylecore import FusionParams


@dataclass(frozen=True)
class RunConfig:
    """Everything `stylebatch submit` was asked to do."""

    manifest: Location
    output: Location
    results: Location
    defaults: FusionParams
    weights: str = "caffe"
    address: str | None = None
    workers: int | None = None
    threads: int | None = None
    retries: int = 2
    force: bool = False
    strict: bool = False
    s3_endpoint: str | None = None
    gpus_per_worker: float | None = None
    device: str = "auto"
    wait_for_workers: float = DEFAULT_WAIT_FOR_WORKERS_SECONDS


@dataclass
class RunSummary:
    """Counts and timing of one run, updated as results arrive."""

    run_id: str
    total: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "skipped": 0, "failed": 0})
    failures: list[str] = field(default_factory=list)
    invalid: list[RowError] = field(default_factory=list)
    invalid_count: int = 0
    interrupted: bool = False
    started: float = field(default_factory=time.monotonic)
    results_file: Location | None = None

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def succeeded(self) -> bool:
        return not self.interrupted and self.counts["failed"] == 0 and self.invalid_count == 0


class ValidationFailed(Exception):
    """--strict and some rows are invalid: nothing ran."""

    def __init__(self, summary: RunSummary) -> None:
        super().__init__(f"{summary.invalid_count} invalid row(s)")
        self.summary = summary


ProgressHook = Callable[[RunSummary, dict[str, Any] | None], None]
MAX_LISTED_ERRORS = 50


def new_run_id() -> str:
    """Sortable by start time, unique across concurrent runs."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def validate(config: RunConfig, storage: Storage, summary: RunSummary) -> list[str]:
    """First pass over the manifest: count rows, collect invalid ones; returns warnings."""
    columns, rows = read_rows(storage, config.manifest)
    warnings = check_columns(config.manifest, columns)
    validator = RowValidator(config.manifest, config.output, config.defaults, config.weights)
    for number, cells in enumerate(rows, start=1):
        summary.total += 1
        outcome = validator(number, cells)
        if isinstance(outcome, RowError):
            summary.invalid_count += 1
            if len(summary.invalid) < MAX_LISTED_ERRORS:
                summary.invalid.append(outcome)
    return warnings


def invalid_lines(summary: RunSummary) -> list[str]:
    """One line per listed invalid row, and how many more there are."""
    lines = [f"invalid {error}" for error in summary.invalid]
    hidden = summary.invalid_count - len(summary.invalid)
    return lines + ([f"... and {hidden} more invalid row(s)"] if hidden > 0 else [])


def jobs(config: RunConfig, storage: Storage) -> Iterator[Job | RowError]:
    """Second pass: the same validation, streamed, for dispatch."""
    _, rows = read_rows(storage, config.manifest)
    validator = RowValidator(config.manifest, config.output, config.defaults, config.weights)
    for number, cells in enumerate(rows, start=1):
        yield validator(number, cells)


def run(config: RunConfig, on_progress: ProgressHook | None = None,
        on_status: Callable[[str], None] = lambda message: None) -> RunSummary:
    """Execute a whole run; returns its summary (also when interrupted with Ctrl-C)."""
    storage = Storage(config.s3_endpoint)
    summary = RunSummary(new_run_id())
    for warning in validate(config, storage, summary):
        on_status(f"warning: {warning}")
    if summary.invalid_count:
        if config.strict:
            raise ValidationFailed(summary)
        for message in invalid_lines(summary):
            on_status(message)
    done_before = {} if config.force else finished_outputs(storage, config.results)
    existing = set() if config.force else {str(location) for location in storage.list(config.output)}
    writer = ResultsWriter(storage, config.results, summary.run_id)

    def record(result: dict[str, Any]) -> None:
        writer.add(result)
        summary.counts[result["status"]] += 1
        if result["status"] == "failed" and len(summary.failures) < MAX_LISTED_ERRORS:
            summary.failures.append(f"row {result['row']}: {result['error']}")
        if on_progress:
            on_progress(summary, result)

    started_ray = _connect(config.address)
    stop = threading.Event()
    try:
        with _ctrl_c_sets(stop):
            plan = plan_workers(read_cluster_state(local=started_ray),
                                PlanOptions(config.workers, config.threads, config.gpus_per_worker, config.device))
            pool = WorkerPool(plan, storage, config.weights, config.retries, summary.run_id, on_status, stop,
                              config.wait_for_workers)
            if on_progress:
                on_progress(summary, None)
            for item in jobs(config, storage):
                if stop.is_set():
                    raise KeyboardInterrupt
                if isinstance(item, RowError):
                    record(_invalid_record(item, config.weights))
                elif str(item.output) in existing:
                    record(_skipped_record(item, config.weights, done_before.get(str(item.output))))
                else:
                    for result in pool.submit(item):
                        record(result)
            for result in pool.drain():
                record(result)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        summary.results_file = writer.close()
        if started_ray:
            ray.shutdown()
    return summary


@contextmanager
def _ctrl_c_sets(stop: threading.Event) -> Iterator[None]:
    """While inside, a first Ctrl-C (SIGINT) only sets `stop`, which the dispatch loop turns into
    a KeyboardInterrupt at its next check; a second one interrupts at once, as Python's default.

    Python's own handler is not enough: the main thread spends the run inside Ray's native
    calls, and a Ctrl-C there was once seen to be lost (the run went on to the end and
    exited 0). Installed after `ray.init`, so that it is this handler that runs; only the
    main thread can install one.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum: int, frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _connect(address: str | None) -> bool:
    """Connect to `address` (or RAY_ADDRESS); without either start a local Ray. True if started here."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        return False
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False)
    return True


def _invalid_record(error: RowError, weights: str) -> dict[str, Any]:
    now = utc_now()
    cells = error.cells
    return {"row": error.row, "content": _text(cells.get("content")), "style": _text(cells.get("style")),
            "output": _text(cells.get("output")), "weights": weights, "status": "failed",
            "stylebatch_version": STYLEBATCH_VERSION,
            "error": f"invalid row: column {error.column}: {error.reason}", "started_at": now,
            "finished_at": now}


def _skipped_record(job: Job, weights: str, previous_run: str | None) -> dict[str, Any]:
    now = utc_now()
    reason = (f"output exists, finished in run {previous_run}" if previous_run
              else "output exists (not recorded as finished by any run); pass --force to overwrite it")
    return job_record(job, weights) | {"status": "skipped", "error": reason, "started_at": now, "finished_at": now}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
