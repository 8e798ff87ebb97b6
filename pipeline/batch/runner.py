"""The driver of `stylebatch submit`: validate, check, claim, skip what is done, stream jobs to Ray, record.

Its memory does not grow with the manifest: the manifest is streamed twice (once to
validate every row before any compute, once to dispatch), output collisions are found on
local disk (`pipeline.batch.outputs`), finished outputs are found a chunk of rows at a time
(`Storage.stat_many`), and records go to a local journal and the results location in parts
(`pipeline.batch.results`). It never imports torch; Ray is started only once a row needs
computing.

Before any compute it checks that the output and results locations can be written, takes
the output prefix's lease (a second run on the same prefix waits for the first, so no row is
ever computed twice), and delivers what runs that ended badly left behind
(`pipeline.batch.recovery`).
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from pipeline.batch.manifest import Job, RowError, RowValidator, read_manifest, unknown_column_warnings
from pipeline.batch.outputs import CollisionStream, OutputIndex, RowNumbers, RowNumbersReader
from pipeline.batch.records import STYLEBATCH_VERSION, failed_record, invalid_record, job_record, skipped_record
from pipeline.batch.recovery import rebuild_in_flight, recover
from pipeline.batch.results import ResultsWriter
from pipeline.batch.runs import HEARTBEAT_SECONDS, RunRecord, utc_now, write_run
from pipeline.batch.spool import Spool, spool_root
from pipeline.storage.store import Lease, LeaseHeld, Location, Storage, StorageError, check_storable_name
from stylecore.params import FusionParams

CHUNK_ROWS = 1000
MAX_LISTED_ERRORS = 50
LEASE_EXPIRY_SECONDS = 120.0
LEASE_POLL_SECONDS = 2.0
PROGRESS_SECONDS = 0.1


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
    retry_window: float = 120.0
    gpus_per_worker: float | None = None
    device: str = "auto"
    wait_for_workers: float = 15 * 60.0


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
    stopped: str | None = None  # why the run had to stop early (storage down), if it did
    started: float = field(default_factory=time.monotonic)
    results_file: Location | None = None
    worse_than_start: int = 0  # ok rows whose image ended with a higher loss than its finest level started at

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def succeeded(self) -> bool:
        return (not self.interrupted and not self.stopped and self.counts["failed"] == 0
                and self.invalid_count == 0)

    @property
    def outcome(self) -> str:
        return "interrupted" if self.interrupted else "stopped" if self.stopped else "finished"


class ValidationFailed(Exception):
    """--strict and some rows are invalid: nothing ran."""

    def __init__(self, summary: RunSummary) -> None:
        super().__init__(f"{summary.invalid_count} invalid row(s)")
        self.summary = summary


class PreflightFailed(ValueError):
    """The output or results location cannot be used; nothing was computed."""


ProgressHook = Callable[[RunSummary, dict[str, Any] | None], None]
StatusHook = Callable[[str], None]


def new_run_id() -> str:
    """Sortable by start time, unique across concurrent runs."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def invalid_lines(summary: RunSummary) -> list[str]:
    """One line per listed invalid row, and how many more there are."""
    lines = [f"invalid {error}" for error in summary.invalid]
    hidden = summary.invalid_count - len(summary.invalid)
    return lines + ([f"... and {hidden} more invalid row(s)"] if hidden > 0 else [])


class Run:
    """One execution of a RunConfig: its passes over the manifest and everything they touch."""

    def __init__(self, config: RunConfig, on_progress: ProgressHook | None, on_status: StatusHook) -> None:
        self.config, self.on_progress, self.on_status = config, on_progress, on_status
        self.storage = Storage(config.s3_endpoint, retry_window=config.retry_window)
        self.summary = RunSummary(new_run_id())
        self.stop = threading.Event()
        self.in_flight: dict[int, dict[str, Any]] = {}
        self.pool: Any = None
        self.started_ray = False
        self._last_progress = 0.0

    def rows(self, collisions: CollisionStream | None = None,
             invalid_before: RowNumbersReader | None = None) -> Iterator[Job | RowError]:
        """One pass over the manifest: every row validated, with output collisions as RowErrors.

        `invalid_before`: the rows an earlier pass found invalid; the others skip the output
        checks (they touch the filesystem), which that pass made and the workers make again.
        """
        config = self.config
        manifest = read_manifest(self.storage, config.manifest)
        checked = RowValidator(config.manifest, config.output, config.defaults, config.weights,
                               check_output=self._check_output, columns=manifest.columns)
        trusted = checked if invalid_before is None else RowValidator(
            config.manifest, config.output, config.defaults, config.weights, columns=manifest.columns)
        for number, cells in manifest.rows:
            if isinstance(cells, RowError):
                item: Job | RowError = cells
            elif invalid_before is None or number in invalid_before:
                item = checked(number, cells)
            else:
                item = trusted(number, cells)
            if collisions is not None and isinstance(item, Job):
                collision = collisions.get(item.row)
                if collision is not None:
                    item = RowError(item.row, "output", collision.reason(str(item.output)),
                                    job_record(item, config.weights))
            yield item

    def _check_output(self, output: Location) -> None:
        """A name some filesystem or S3 cannot hold, or a local output whose folder leads out of the
        output prefix (through a symlink), is an invalid row. The folder is what matters: workers
        write beside the name and rename over it, which replaces a symlink there instead of
        following it; so folders are checked once each, not every row's name."""
        check_storable_name(output)
        self._check_folder(output.parent)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one Run per process; the cache goes with it
    def _check_folder(self, folder: Location) -> None:
        self.storage.check_confined(folder, self.config.output)

    def validate(self, index: OutputIndex, invalid: RowNumbers) -> None:
        """First pass: count rows, collect invalid ones, index outputs for collisions."""
        manifest = read_manifest(self.storage, self.config.manifest)
        for warning in unknown_column_warnings(manifest):
            self.on_status(f"warning: {warning}")
        summary, prefix = self.summary, str(self.config.output).rstrip("/")
        for item in self.rows():
            summary.total += 1
            if summary.total % CHUNK_ROWS == 0 and self.stop.is_set():
                raise KeyboardInterrupt
            if isinstance(item, RowError):
                self._invalid(item)
                invalid.add(item.row)
            else:
                output = str(item.output)
                index.add(item.row, output, _folders_between(prefix, output))

    def _invalid(self, error: RowError) -> None:
        self.summary.invalid_count += 1
        if len(self.summary.invalid) < MAX_LISTED_ERRORS:
            self.summary.invalid.append(error)

    def list_collisions(self, collisions: CollisionStream) -> None:
        """Add rows whose outputs collide to the invalid ones (with exact messages for those listed)."""
        if not collisions.count:
            return
        self.summary.invalid_count += collisions.count
        wanted = MAX_LISTED_ERRORS - len(self.summary.invalid)
        if wanted > 0:
            listed = [item for item in self.rows(collisions) if isinstance(item, RowError)
                      and item.column == "output" and "output of row" in item.reason]
            self.summary.invalid = sorted([*self.summary.invalid, *listed[:wanted]], key=lambda error: error.row)

    def execute(self) -> RunSummary:
        """The whole run; returns its summary (also when interrupted, or stopped by storage)."""
        with _StopOnCtrlC(self.stop) as self.ctrl_c:
            try:
                self._execute()
            except KeyboardInterrupt:
                self.summary.interrupted = True
        return self.summary

    def _execute(self) -> None:
        config, summary = self.config, self.summary
        with OutputIndex() as index:
            invalid = RowNumbers(index.folder)
            self.validate(index, invalid)
            self.list_collisions(index.collisions())
            if summary.total == 0:
                return
            if summary.invalid_count and config.strict:
                raise ValidationFailed(summary)
            for message in invalid_lines(summary):
                self.on_status(message)
            collisions = index.collisions()
            self.preflight()
            with self._output_lease():
                recover(self.storage, config.results, summary.run_id, self.on_status)
                self._dispatch_all(collisions, invalid.reader())

    def preflight(self) -> None:
        """The output and results locations exist and can be written (probe write and delete); warn
        where an S3 server cannot refuse to overwrite (then only the driver's checks guard outputs)."""
        for what, location in (("output", self.config.output), ("results", self.config.results)):
            try:
                self.storage.probe_writable(location)
            except StorageError as error:
                raise PreflightFailed(f"cannot write the {what} location: {error}") from None
        output = self.config.output
        if output.scheme == "s3" and not self.storage.supports_conditional_writes(output):
            self.on_status(f"warning: the S3 server of {output} ignores conditional writes (If-None-Match): "
                           "an output written by something else while a row runs could be overwritten, and "
                           "two runs on this prefix are kept apart on a best-effort basis only")

    @contextmanager
    def _output_lease(self) -> Iterator[Lease]:
        """Hold the output prefix's lease; while another live run holds it, wait (Ctrl-C stops)."""
        holder = {"run_id": self.summary.run_id, "host": socket.gethostname(), "pid": str(os.getpid()),
                  "started_at": utc_now().isoformat()}
        announced = False
        while True:
            acquired = self.storage.acquire_lease(self.config.output, holder, LEASE_EXPIRY_SECONDS)
            if isinstance(acquired, Lease):
                break
            if not announced:
                self.on_status(f"another run is working on {self.config.output} ({_describe_holder(acquired)}); "
                               "waiting for it to finish (Ctrl-C to stop waiting)")
                announced = True
            if self.stop.wait(LEASE_POLL_SECONDS):
                raise KeyboardInterrupt
        try:
            yield acquired
        finally:
            acquired.release()

    def _dispatch_all(self, collisions: CollisionStream, invalid_before: RowNumbersReader) -> None:
        config, summary = self.config, self.summary
        run_record = RunRecord(summary.run_id, str(config.manifest), str(config.output), summary.total,
                               utc_now(), utc_now(), socket.gethostname(), STYLEBATCH_VERSION)
        write_run(self.storage, config.results, run_record)
        spool = Spool(spool_root(config.results), summary.run_id)
        writer = ResultsWriter(self.storage, config.results, summary.run_id, spool,
                               in_flight=lambda: list(self.in_flight.values()))
        self.writer = writer
        heartbeat = _Heartbeat(lambda: write_run(self.storage, config.results, run_record.beat(summary.counts)))
        try:
            with heartbeat:
                if self.on_progress:
                    self.on_progress(summary, None)
                try:
                    for chunk in _chunks(self.rows(collisions, invalid_before), CHUNK_ROWS):
                        if self.stop.is_set():
                            raise KeyboardInterrupt
                        self._dispatch_chunk(chunk)
                    if self.pool is not None:
                        for result in self.pool.drain():
                            self._record(result)
                    self._progress(None, force=True)
                except KeyboardInterrupt:
                    summary.interrupted = True
                    self._rebuild_in_flight()
                except StorageError as error:
                    summary.stopped = f"the results location could not be written: {error}"
                    self._finish_in_flight()
        finally:
            self._shutdown_pool()
            self._close(writer, spool, run_record)

    def _dispatch_chunk(self, chunk: list[Job | RowError]) -> None:
        jobs = [item for item in chunk if isinstance(item, Job)]
        found = ([None] * len(jobs) if self.config.force
                 else self.storage.stat_many([job.output for job in jobs]))
        existing = {job.row: info for job, info in zip(jobs, found, strict=True)}
        weights, now = self.config.weights, utc_now()  # rows without compute start and end together
        for item in chunk:
            if isinstance(item, RowError):
                self._record(invalid_record(item, weights, now))
                continue
            info = existing.get(item.row)
            if info is not None and info.is_folder:
                self._record(failed_record(item, weights, f"{item.output} is a folder, not an image file", now))
            elif info is not None:
                self._record(skipped_record(item, weights, info.metadata, now))
            else:
                self._dispatch(item)

    def _dispatch(self, job: Job) -> None:
        if self.pool is None:
            self.pool = self._start_pool()
        record = job_record(job, self.config.weights) | {"run_id": self.summary.run_id}
        self.in_flight[job.row] = record
        self.writer.dispatched(record)
        for result in self.pool.submit(job):
            self._record(result, durable=True)

    def _record(self, result: dict[str, Any], durable: bool = False) -> None:
        summary = self.summary
        self.in_flight.pop(result["row"], None)
        summary.counts[result["status"]] += 1
        summary.worse_than_start += bool(result.get("worse_than_start"))
        if result["status"] == "failed" and len(summary.failures) < MAX_LISTED_ERRORS:
            summary.failures.append(f"row {result['row']}: {result['error']}")
        self.writer.add(result, durable)
        self._progress(result)

    def _progress(self, result: dict[str, Any] | None, force: bool = False) -> None:
        """Report progress: at most every PROGRESS_SECONDS for rows that need no compute (a skipped
        million would otherwise spend most of its time redrawing), at once for computed rows."""
        now = time.monotonic()
        if self.on_progress and (force or now - self._last_progress >= PROGRESS_SECONDS
                                 or (result is not None and result.get("evaluations") is not None)):
            self._last_progress = now
            self.on_progress(self.summary, result)

    def _rebuild_in_flight(self) -> None:
        """After Ctrl-C: rows whose outputs were written before their results could arrive."""
        for record in rebuild_in_flight(self.storage, list(self.in_flight.values())):
            self._record(record, durable=True)

    def _finish_in_flight(self) -> None:
        """Storage is down for the results: journal what the workers still return, then stop."""
        self.writer.flush_rows = self.writer.flush_seconds = float("inf")  # type: ignore[assignment]
        if self.pool is not None:
            try:
                for result in self.pool.drain():
                    self._record(result, durable=True)
            except KeyboardInterrupt:
                self.summary.interrupted = True

    def _start_pool(self) -> Any:
        """Connect to (or start) Ray and ask for workers: only once the first row needs computing."""
        from pipeline.batch.cluster_state import read_cluster_state
        from pipeline.batch.planning import PlanOptions, plan_workers
        from pipeline.batch.pool import WorkerPool

        config = self.config
        self.started_ray = _connect(config.address)
        self.ctrl_c.install()  # ray.init may have put its own SIGINT handler in place
        plan = plan_workers(read_cluster_state(local=self.started_ray),
                            PlanOptions(config.workers, config.threads, config.gpus_per_worker, config.device))
        return WorkerPool(plan, self.storage, config.weights, config.retries, self.summary.run_id, self.on_status,
                          self.stop, config.wait_for_workers, output_prefix=config.output,
                          overwrite=config.force)

    def _shutdown_pool(self) -> None:
        if self.started_ray:
            import ray

            ray.shutdown()

    def _close(self, writer: ResultsWriter, spool: Spool, run_record: RunRecord) -> None:
        """Compact the results and end the run record; if storage is down, keep the journal."""
        summary = self.summary
        try:
            summary.results_file = writer.close()
            write_run(self.storage, self.config.results,
                      run_record.ended(summary.outcome, summary.counts, summary.stopped or ""))
        except StorageError as error:
            spool.close(delete=False)
            summary.stopped = summary.stopped or f"the results location could not be written: {error}"
            summary.stopped += (f"; every record is kept in {spool.folder}, and the next run on the same "
                                "results location (on this machine) delivers it")


def run(config: RunConfig, on_progress: ProgressHook | None = None,
        on_status: StatusHook = lambda message: None) -> RunSummary:
    """Execute a whole run; returns its summary (also when interrupted with Ctrl-C)."""
    return Run(config, on_progress, on_status).execute()


def _folders_between(prefix: str, output: str) -> list[str]:
    """The folders strictly between `prefix` and the file `output` ('p/a', 'p/a/b' for 'p/a/b/c.png')."""
    relative = output[len(prefix):].strip("/").split("/")[:-1]
    folders, current = [], prefix
    for part in relative:
        current = f"{current}/{part}"
        folders.append(current)
    return folders


def _describe_holder(held: LeaseHeld) -> str:
    holder = held.holder
    return (f"run {holder.get('run_id', '?')} on host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, "
            f"started {holder.get('started_at', '?')}")


def _chunks(items: Iterator[Job | RowError], size: int) -> Iterator[list[Job | RowError]]:
    while chunk := list(islice(items, size)):
        yield chunk


class _Heartbeat:
    """Calls `beat` every HEARTBEAT_SECONDS on a daemon thread while inside; a failing beat is skipped
    (the results writer reports a location that stays down)."""

    def __init__(self, beat: Callable[[], None], interval: float = HEARTBEAT_SECONDS) -> None:
        self.beat, self.interval = beat, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stylebatch-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except StorageError:
                continue


class _StopOnCtrlC:
    """While inside, a first Ctrl-C (SIGINT) only sets `stop`, which the run's loops turn into a
    KeyboardInterrupt at their next check; a second one interrupts at once, as Python's default.

    Python's own handler is not enough: the main thread spends the run inside Ray's native
    calls, and a Ctrl-C there was once seen to be lost (the run went on to the end and
    exited 0). Only the main thread can install a handler; elsewhere this does nothing.
    """

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.active = threading.current_thread() is threading.main_thread()
        self.previous: Any = None

    def __enter__(self) -> _StopOnCtrlC:
        if self.active:
            self.previous = signal.getsignal(signal.SIGINT)
            self.install()
        return self

    def install(self) -> None:
        if self.active:
            signal.signal(signal.SIGINT, self._request_stop)

    def _request_stop(self, signum: int, frame: object) -> None:
        self.stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.signal(signal.SIGINT, self.previous)


def _connect(address: str | None) -> bool:
    """Connect to `address` (or RAY_ADDRESS); without either start a local Ray. True if started here."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        return False
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    return True
