"""Worker actors on Ray: how many, with which resources, and how jobs are fed to them.

Jobs go only to workers that have reported ready (VGG-19 loaded), at most
IN_FLIGHT_PER_WORKER each, so no job waits on a worker that cannot be scheduled (too few
CPUs, GPU nodes still starting). Ray restarts a worker process that dies and resends its
unfinished jobs; a ledger actor counts how often each row has started, so only the row
that was running when a worker died uses up its retries. The pool waits on Ray in short
slices so that a stop request (Ctrl-C, set by the runner) is acted on within one slice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from pipeline.batch.manifest import Job
from pipeline.storage.secrets import redact
from pipeline.storage.store import Storage
from pipeline.batch.records import job_record, utc_now
from pipeline.batch.worker import RowProcessor

IN_FLIGHT_PER_WORKER = 2
WAIT_SLICE_SECONDS = 0.5


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers, on which device, with how many torch threads and Ray resources each."""

    count: int
    device: str
    threads: int
    resources: dict[str, float]

    def __str__(self) -> str:
        return f"{self.count} {self.device} worker(s) with {self.threads} thread(s) each"


def plan_workers(workers: int | None, threads: int | None) -> WorkerPlan:
    """One worker per GPU when the cluster has GPUs; otherwise CPU workers sharing the cores.

    Raises ValueError when a CPU worker would need more cores than any node has.
    """
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    if gpus:
        count = workers or gpus
        return WorkerPlan(count, "cuda", threads or max(1, min(8, cpus // count)), {"num_gpus": 1, "num_cpus": 1})
    largest_node = max((int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node["Alive"]), default=cpus)
    count = workers or max(1, cpus // (threads or min(largest_node, 8)))
    per_worker = threads or max(1, min(largest_node, cpus // count))
    if per_worker > largest_node:
        raise ValueError(f"--threads {per_worker} is more than the {largest_node} CPUs of the largest node")
    return WorkerPlan(count, "cpu", per_worker, {"num_cpus": per_worker})


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
    """Feeds jobs to ready workers and yields their result records."""

    def __init__(self, plan: WorkerPlan, storage: Storage, weights: str, retries: int, run_id: str,
                 on_status: Callable[[str], None], stop: threading.Event) -> None:
        ledger_name = f"stylebatch-attempts-{run_id}"
        self.ledger = AttemptLedger.options(name=ledger_name).remote()
        actor_class = ray.remote(RowProcessor).options(max_restarts=-1, max_task_retries=-1, **plan.resources)
        self.actors = [actor_class.remote(storage, weights, plan.device, plan.threads,
                                          count_attempt=LedgerClient(ledger_name), max_attempts=retries + 1,
                                          run_id=run_id)
                       for _ in range(plan.count)]
        self.weights, self.on_status, self.stop = weights, on_status, stop
        self.starting = {actor.describe.remote(): index for index, actor in enumerate(self.actors)}
        self.load: dict[int, int] = {}  # ready worker -> jobs in flight
        self.pending: dict[Any, tuple[Job, int]] = {}
        self.start_errors: list[str] = []
        on_status(f"starting {plan}")

    def submit(self, job: Job) -> Iterator[dict[str, Any]]:
        """Queue `job` on the least busy ready worker, first yielding results while none has room."""
        while not any(load < IN_FLIGHT_PER_WORKER for load in self.load.values()):
            yield from self._next_event()
        index = min(self.load, key=self.load.__getitem__)
        self.pending[self.actors[index].process.remote(job)] = (job, index)
        self.load[index] += 1

    def drain(self) -> Iterator[dict[str, Any]]:
        """Results of every job still in flight."""
        while self.pending:
            yield from self._next_event()
        if self.starting:
            self.on_status(f"{len(self.starting)} of {len(self.actors)} worker(s) had not started by the end "
                           "(still loading, or not enough free CPUs/GPUs in the cluster)")

    def _next_event(self) -> Iterator[dict[str, Any]]:
        """Wait for one job to finish (yielding its record) or one worker to become ready, for at
        most one slice; raises KeyboardInterrupt once a stop is requested."""
        if not self.pending and not self.starting:
            reason = self.start_errors[0] if self.start_errors else "every worker is gone"
            raise RuntimeError(f"no worker is available: {reason}")
        ready, _ = ray.wait([*self.pending, *self.starting], num_returns=1, timeout=WAIT_SLICE_SECONDS)
        if self.stop.is_set():
            raise KeyboardInterrupt
        if not ready:
            return
        (ref,) = ready
        if ref in self.starting:
            self._worker_started(ref)
        else:
            yield self._result(ref)

    def _worker_started(self, ref: Any) -> None:
        index = self.starting.pop(ref)
        try:
            ray.get(ref)
        except RayError as error:
            self.start_errors.append(redact(str(error).splitlines()[0]))
            self.on_status(f"a worker failed to start: {self.start_errors[-1]}")
            return
        self.load[index] = 0

    def _result(self, ref: Any) -> dict[str, Any]:
        job, index = self.pending.pop(ref)
        self.ledger.forget.remote(job.row)
        if index in self.load:
            self.load[index] -= 1
        try:
            return ray.get(ref)
        except RayActorError as error:
            self.load.pop(index, None)  # gone for good: no more jobs for it
            message = f"the worker is gone and cannot be restarted: {redact(str(error).splitlines()[0])}"
        except RayError as error:
            message = f"Ray error: {redact(str(error).splitlines()[0])}"
        now = utc_now()
        return job_record(job, self.weights) | {"status": "failed", "error": message, "started_at": now,
                                                "finished_at": now}
