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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from pipeline.manifest import Job, RowError, RowValidator, check_columns, read_rows
from pipeline.results import ResultsWriter, finished_outputs
from pipeline.secrets import redact
from pipeline.storage import Location, Storage
from pipeline.worker import STYLEBATCH_VERSION, RowProcessor, job_record, utc_now
from stylecore import FusionParams

IN_FLIGHT_PER_WORKER = 2


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
    try:
        pool = WorkerPool.start(config, storage, on_status)
        if on_progress:
            on_progress(summary, None)
        for item in jobs(config, storage):
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


@ray.remote(num_cpus=0)
class AttemptLedger:
    """How many times each row in flight has started on some worker."""

    def __init__(self) -> None:
        self.started: dict[int, int] = {}

    def start(self, row: int) -> int:
        self.started[row] = self.started.get(row, 0) + 1
        return self.started[row]

    def forget(self, row: int) -> None:
        self.started.pop(row, None)


class LedgerClient:
    """A picklable `count_attempt` callable for RowProcessor, backed by the run's AttemptLedger.

    It carries the ledger's name, not its handle: an actor handle among a worker's constructor
    arguments would make Ray's restart of a dead worker depend on that argument staying alive.
    """

    def __init__(self, ledger_name: str) -> None:
        self.ledger_name = ledger_name
        self._ledger: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"ledger_name": self.ledger_name, "_ledger": None}

    def __call__(self, row: int) -> int:
        if self._ledger is None:
            self._ledger = ray.get_actor(self.ledger_name)
        return ray.get(self._ledger.start.remote(row))


class WorkerPool:
    """Worker actors, each fed at most IN_FLIGHT_PER_WORKER jobs at a time."""

    def __init__(self, actors: list[Any], ledger: Any, weights: str) -> None:
        self.actors, self.ledger, self.weights = actors, ledger, weights
        self.load = {index: 0 for index in range(len(actors))}
        self.pending: dict[Any, tuple[Job, int]] = {}

    @classmethod
    def start(cls, config: RunConfig, storage: Storage, on_status: Callable[[str], None]) -> WorkerPool:
        """Create the actors (one per GPU, or CPU actors sharing the cores) and wait until one is ready."""
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
        if gpus:
            count = config.workers or gpus
            threads = config.threads or max(1, min(8, cpus // count))
            options: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1}
            device = "cuda"
        else:
            count = config.workers or max(1, cpus // (config.threads or min(cpus, 8)))
            threads = config.threads or max(1, cpus // count)
            options = {"num_cpus": threads}
            device = "cpu"
        ledger_name = f"stylebatch-attempts-{new_run_id()}"
        ledger = AttemptLedger.options(name=ledger_name).remote()
        # Ray restarts a dead worker and resends its unfinished jobs, whether they had started or
        # were only queued; the ledger bounds the retries of the row that was running.
        actor_class = ray.remote(RowProcessor).options(max_restarts=-1, max_task_retries=-1, **options)
        actors = [actor_class.remote(storage, config.weights, device, threads,
                                     count_attempt=LedgerClient(ledger_name), max_attempts=config.retries + 1)
                  for _ in range(count)]
        on_status(f"starting {count} {device} worker(s) with {threads} thread(s) each")
        cls._wait_ready(actors)
        return cls(actors, ledger, config.weights)

    @staticmethod
    def _wait_ready(actors: list[Any]) -> None:
        """Block until a worker has loaded VGG-19; fail fast if every worker's start fails."""
        waiting = [actor.describe.remote() for actor in actors]
        errors = []
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            try:
                ray.get(ready[0])
                return
            except RayError as error:
                errors.append(redact(str(error)))
        raise RuntimeError(f"no worker could start: {errors[0]}")

    def submit(self, job: Job) -> Iterator[dict[str, Any]]:
        """Queue `job` on the least busy worker, first yielding results while all are full."""
        while len(self.pending) >= IN_FLIGHT_PER_WORKER * len(self.actors):
            yield self._next_result()
        index = min(self.load, key=self.load.__getitem__)
        self.pending[self.actors[index].process.remote(job)] = (job, index)
        self.load[index] += 1

    def drain(self) -> Iterator[dict[str, Any]]:
        """Results of every job still in flight."""
        while self.pending:
            yield self._next_result()

    def _next_result(self) -> dict[str, Any]:
        (ref,), _ = ray.wait(list(self.pending), num_returns=1)
        job, index = self.pending.pop(ref)
        self.load[index] -= 1
        self.ledger.forget.remote(job.row)
        try:
            return ray.get(ref)
        except RayActorError as error:
            message = f"the worker is gone and cannot be restarted: {redact(str(error).splitlines()[0])}"
        except RayError as error:
            message = f"Ray error: {redact(str(error).splitlines()[0])}"
        now = utc_now()
        return job_record(job, self.weights) | {"status": "failed", "error": message, "started_at": now,
                                                "finished_at": now}
