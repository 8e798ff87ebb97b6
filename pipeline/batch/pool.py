"""Worker actors on Ray: asking for them, feeding them jobs, releasing them.

The pool asks for the workers of a `WorkerPlan` (pipeline.batch.planning) as jobs arrive,
up to the plan's count: actors that wait for resources are what make Ray's autoscaler add
nodes. Jobs wait in a bounded backlog and go only to workers that have reported ready
(VGG-19 loaded), at most IN_FLIGHT_PER_WORKER each: as many as a worker runs at once
(pipeline.batch.worker), so that it reads the next row and writes the last one while it
synthesizes. When the rows run out, idle and still-pending workers are killed at once, so
that the autoscaler can remove their nodes while the last rows finish.

While no worker is ready the pool says what it waits for; after `wait_for_workers` seconds
it raises WorkersUnavailable. Ray restarts a worker process that dies and resends its
unfinished jobs; a ledger actor counts how often each row has started its synthesis, so
only the row that was running when a worker died uses up its retries. The pool waits on
Ray in short slices so that a stop request (Ctrl-C, set by the runner) is acted on within
one slice.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from pipeline.batch.manifest import Job
from pipeline.batch.planning import WorkerPlan, WorkersUnavailable
from pipeline.batch.records import job_record, utc_now
from pipeline.batch.worker import CONCURRENT_ROWS, CUDA_ALLOC_CONF, RowProcessor
from pipeline.storage.secrets import redact
from pipeline.storage.store import Location, Storage

IN_FLIGHT_PER_WORKER = CONCURRENT_ROWS
WAIT_SLICE_SECONDS = 0.5
WAITING_MESSAGE_EVERY_SECONDS = 60.0
DEFAULT_WAIT_FOR_WORKERS_SECONDS = 15 * 60.0


class _AttemptLedger:
    """How many times each row in flight has started its synthesis on some worker (a Ray actor)."""

    def __init__(self) -> None:
        self.started: dict[int, int] = {}

    def start(self, row: int) -> int:
        self.started[row] = self.started.get(row, 0) + 1
        return self.started[row]

    def forget(self, row: int) -> None:
        self.started.pop(row, None)


AttemptLedger: Any = ray.remote(num_cpus=0)(_AttemptLedger)


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
        return int(ray.get(self._ledger.start.remote(row)))


class WorkerPool:
    """Feeds jobs to ready workers and yields their result records."""

    def __init__(self, plan: WorkerPlan, storage: Storage, weights: str, retries: int, run_id: str,
                 on_status: Callable[[str], None], stop: threading.Event,
                 wait_for_workers: float = DEFAULT_WAIT_FOR_WORKERS_SECONDS, *,
                 output_prefix: Location | None = None, overwrite: bool = False) -> None:
        """`output_prefix`: where every output must stay (re-checked at each write); `overwrite`:
        whether workers may replace an existing output (--force)."""
        self.plan, self.storage, self.weights, self.retries = plan, storage, weights, retries
        self.run_id, self.output_prefix, self.overwrite = run_id, output_prefix, overwrite
        self.on_status, self.stop, self.wait_for_workers = on_status, stop, wait_for_workers
        self.ledger_name = f"stylebatch-attempts-{run_id}"
        self.ledger = AttemptLedger.options(name=self.ledger_name).remote()
        self.actor_class: Any = ray.remote(RowProcessor).options(
            max_restarts=-1, max_task_retries=-1, max_concurrency=CONCURRENT_ROWS,
            runtime_env={"env_vars": {"PYTORCH_CUDA_ALLOC_CONF": CUDA_ALLOC_CONF}}, **plan.resources)
        self.actors: list[Any] = []
        self.starting: dict[Any, int] = {}  # describe() ref -> worker not ready yet
        self.load: dict[int, int] = {}  # ready worker -> jobs in flight
        self.released: set[int] = set()
        self.backlog: deque[Job] = deque()
        self.pending: dict[Any, tuple[Job, int]] = {}
        self.start_errors: list[str] = []
        self.waiting_since: float | None = None
        self.last_waiting_message = 0.0
        for note in plan.notes:
            on_status(note)
        on_status(f"asking for {plan}")

    def submit(self, job: Job) -> Iterator[dict[str, Any]]:
        """Accept `job`, first yielding results while the backlog is full."""
        while len(self.backlog) + len(self.pending) >= IN_FLIGHT_PER_WORKER * self.plan.count:
            yield from self._next_event()
        self.backlog.append(job)
        self._grow()
        self._dispatch()

    def drain(self) -> Iterator[dict[str, Any]]:
        """Results of every job still waiting or in flight; workers are released as they fall idle."""
        while self.backlog or self.pending:
            self._release_idle()
            yield from self._next_event()
        self._release_idle()
        ray.kill(self.ledger)

    def _grow(self) -> None:
        """Ask for another worker while the accepted jobs need more than those asked for hold."""
        accepted = len(self.backlog) + len(self.pending)
        while len(self.actors) < self.plan.count and IN_FLIGHT_PER_WORKER * len(self.actors) < accepted:
            actor = self.actor_class.remote(self.storage, self.weights, self.plan.device, self.plan.threads,
                                            count_attempt=LedgerClient(self.ledger_name),
                                            max_attempts=self.retries + 1, gpu_share=self.plan.num_gpus or 1.0,
                                            run_id=self.run_id, output_prefix=self.output_prefix,
                                            overwrite=self.overwrite)
            self.starting[actor.describe.remote()] = len(self.actors)
            self.actors.append(actor)

    def _dispatch(self) -> None:
        """Send waiting jobs to the least busy ready workers that have room."""
        while self.backlog and self.load:
            index = min(self.load, key=self.load.__getitem__)
            if self.load[index] >= IN_FLIGHT_PER_WORKER:
                return
            job = self.backlog.popleft()
            self.pending[self.actors[index].process.remote(job)] = (job, index)
            self.load[index] += 1

    def _release_idle(self) -> None:
        """Once no job waits: kill the workers not yet started and the ready ones with nothing in flight."""
        if self.backlog:
            return
        for ref, index in list(self.starting.items()):
            del self.starting[ref]
            self._release(index)
        for index in [index for index, load in self.load.items() if load == 0]:
            del self.load[index]
            self._release(index)

    def _release(self, index: int) -> None:
        ray.kill(self.actors[index], no_restart=True)
        self.released.add(index)

    def _next_event(self) -> Iterator[dict[str, Any]]:
        """Wait for one job to finish (yielding its record) or one worker to become ready, for at most
        one slice; raises KeyboardInterrupt once a stop is requested, WorkersUnavailable when no worker
        can run the jobs."""
        self._check_workers()
        ready, _ = ray.wait([*self.pending, *self.starting], num_returns=1, timeout=WAIT_SLICE_SECONDS)
        if self.stop.is_set():
            raise KeyboardInterrupt
        if not ready:
            return
        (ref,) = ready
        if ref in self.starting:
            self._worker_started(ref)
            self._dispatch()
        else:
            yield self._result(ref)
            self._dispatch()

    def _check_workers(self) -> None:
        """Say what the pool waits for while jobs wait and no worker is ready; give up after the wait."""
        if self.load or not self.backlog:
            self.waiting_since = None
            return
        if not self.starting and not self.pending:
            reason = self.start_errors[0] if self.start_errors else "every worker is gone"
            raise WorkersUnavailable(f"no worker is available: {reason}")
        now = time.monotonic()
        if self.waiting_since is None:
            self.waiting_since = self.last_waiting_message = now
            self.on_status(f"waiting for worker nodes: {len(self.starting)} worker(s) need {self.plan.demand()} "
                           f"each (up to {self.wait_for_workers / 60:g} min; `ray status` shows the cluster)")
        elif now - self.waiting_since > self.wait_for_workers:
            raise WorkersUnavailable(
                f"no worker started within {self.wait_for_workers / 60:g} min (--wait-for-workers): no node "
                f"joined with {self.plan.demand()} free for one; `ray status` and the autoscaler's log "
                "(monitor.log on the head) tell why")
        elif now - self.last_waiting_message >= WAITING_MESSAGE_EVERY_SECONDS:
            self.last_waiting_message = now
            self.on_status(f"still waiting for worker nodes ({(now - self.waiting_since) / 60:.0f} of "
                           f"{self.wait_for_workers / 60:g} min)")

    def _worker_started(self, ref: Any) -> None:
        index = self.starting.pop(ref)
        try:
            info = ray.get(ref)
        except RayError as error:
            self.start_errors.append(redact(str(error).splitlines()[0]))
            self.on_status(f"a worker failed to start: {self.start_errors[-1]}")
            return
        self.load[index] = 0
        self.on_status(f"worker {index + 1} of {self.plan.count} ready on node {info['node']} ({info['device']})")

    def _result(self, ref: Any) -> dict[str, Any]:
        job, index = self.pending.pop(ref)
        self.ledger.forget.remote(job.row)
        if index in self.load:
            self.load[index] -= 1
        try:
            record: dict[str, Any] = ray.get(ref)
            return record
        except RayActorError as error:
            self.load.pop(index, None)  # gone for good: no more jobs for it
            message = f"the worker is gone and cannot be restarted: {redact(str(error).splitlines()[0])}"
        except RayError as error:
            message = f"Ray error: {redact(str(error).splitlines()[0])}"
        now = utc_now()
        return job_record(job, self.weights) | {"status": "failed", "error": message, "started_at": now,
                                                "finished_at": now}
