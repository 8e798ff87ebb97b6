"""How many stylization workers a run asks Ray for, and with which resources each.

A pure function of the cluster given as data: the nodes alive now and the node types its
autoscaler may still launch (with their maximum counts). A run asks for as many workers as
the cluster can grow to, because pending workers are what make Ray's autoscaler add nodes;
`--workers N` caps that. GPU workers take a fraction `--gpus-per-worker` of a GPU each, so
that several syntheses share one GPU; CPU workers take `threads` CPUs each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

MAX_THREADS = 8  # torch threads per worker: more stops paying off for one synthesis
UNBOUNDED_NODES = 100  # how many nodes a node type without a maximum counts as
DEVICES = ("auto", "cpu", "cuda")


class WorkersUnavailable(RuntimeError):
    """No worker became ready in time, or none can start: nothing more can run."""


class Scaling(Enum):
    """What is known about the nodes a cluster may still gain."""

    AUTOSCALER = "autoscaler"  # its autoscaler's node types and maximum counts are known
    STATIC = "static"  # it can gain none (a local Ray started by this run)
    UNKNOWN = "unknown"  # no autoscaler configuration could be read: nodes may or may not join


@dataclass(frozen=True)
class NodeType:
    """A kind of worker node the autoscaler may launch: resources per node, how many at most."""

    name: str
    cpus: float
    gpus: float
    max_count: int | None  # None: no maximum


@dataclass(frozen=True)
class LiveNode:
    """A node alive now; `node_type` when the node says which autoscaler node type it is."""

    node_id: str
    cpus: float
    gpus: float
    node_type: str | None = None
    is_head: bool = False


@dataclass(frozen=True)
class ClusterState:
    """The cluster as planning sees it."""

    nodes: tuple[LiveNode, ...]
    scaling: Scaling
    node_types: tuple[NodeType, ...] = ()
    max_worker_nodes: int | None = None  # the autoscaler's cluster-wide max_workers
    max_resources: Mapping[str, float] = field(default_factory=dict)  # cluster-wide caps, e.g. {"GPU": 16}
    source: str = ""  # where the node types come from, for messages


@dataclass(frozen=True)
class PlanOptions:
    """What the user asked for (`submit --workers/--threads/--gpus-per-worker/--device`)."""

    workers: int | None = None
    threads: int | None = None
    gpus_per_worker: float | None = None
    device: str = "auto"


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers to ask for and what each one gets.

    `device` is what torch runs on inside a worker (auto: CUDA where the worker sees a GPU);
    `num_cpus`/`num_gpus` are the Ray resources each worker actor reserves.
    """

    count: int
    device: str
    threads: int
    num_cpus: float
    num_gpus: float = 0.0
    notes: tuple[str, ...] = ()

    @property
    def resources(self) -> dict[str, float]:
        """Ray actor options."""
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}

    def demand(self) -> str:
        """The resources one worker waits for, as `ray status` names them."""
        parts = ([f"GPU {self.num_gpus:g}"] if self.num_gpus else []) + [f"CPU {self.num_cpus:g}"]
        return ", ".join(parts)

    def __str__(self) -> str:
        return (f"{self.count} worker(s), each with {self.demand()} and {self.threads} torch thread(s), "
                f"device {self.device}")


@dataclass(frozen=True)
class _Shape:
    """Resources of one node (alive, or one the autoscaler may add)."""

    cpus: float
    gpus: float


def plan_workers(state: ClusterState, options: PlanOptions) -> WorkerPlan:
    """The plan for `state` and `options`; ValueError when the options cannot work on this cluster."""
    _check_options(options)
    addable = _addable_nodes(state)
    everything = [_Shape(node.cpus, node.gpus) for node in state.nodes] + [shape for shape, _ in addable]
    any_gpu = any(shape.gpus > 0 for shape in everything)
    wants_gpu = options.gpus_per_worker is not None or options.device == "cuda"
    if wants_gpu and not any_gpu and state.scaling is not Scaling.UNKNOWN:
        asked = (f"--gpus-per-worker {options.gpus_per_worker:g}" if options.gpus_per_worker is not None
                 else "--device cuda")
        raise ValueError(f"{asked}: no node of this cluster has a GPU, and {_cannot_add(state)}")
    plan = _gpu_plan(options, everything) if wants_gpu or any_gpu else _cpu_plan(state, options, everything)
    return _sized(plan, state, options, addable)


def _check_options(options: PlanOptions) -> None:
    if options.gpus_per_worker is not None and not 0 < options.gpus_per_worker <= 1:
        raise ValueError(f"--gpus-per-worker {options.gpus_per_worker:g}: must be more than 0 and at most 1")
    if options.device not in DEVICES:
        raise ValueError(f"--device {options.device!r}: must be one of {', '.join(DEVICES)}")
    if options.workers is not None and options.workers < 1:
        raise ValueError(f"--workers {options.workers}: must be at least 1")
    if options.threads is not None and options.threads < 1:
        raise ValueError(f"--threads {options.threads}: must be at least 1")


def _gpu_plan(options: PlanOptions, everything: list[_Shape]) -> WorkerPlan:
    """Workers holding `gpus_per_worker` of a GPU and an equal share of their node's CPUs (at most 1)."""
    share = options.gpus_per_worker or 1.0
    cpu_shares = [shape.cpus / _per_gpu_node(shape, share) for shape in everything if _per_gpu_node(shape, share)]
    cpu_share = min(cpu_shares, default=1.0)
    num_cpus = min(1.0, math.floor(cpu_share * 100) / 100)
    threads = options.threads or max(1, min(MAX_THREADS, int(cpu_share)))
    return WorkerPlan(0, options.device, threads, num_cpus, share)


def _cpu_plan(state: ClusterState, options: PlanOptions, everything: list[_Shape]) -> WorkerPlan:
    """Workers holding `threads` CPUs each, by default as many as the largest node has (at most 8)."""
    largest = int(max((shape.cpus for shape in everything), default=0))
    if options.threads and largest and options.threads > largest:
        raise ValueError(f"--threads {options.threads} is more than the {largest} CPUs of the largest node"
                         + ("" if state.scaling is Scaling.AUTOSCALER else f", and {_cannot_add(state)}"))
    if not largest and state.scaling is not Scaling.UNKNOWN:
        raise ValueError(f"no node of this cluster has a CPU for a worker, and {_cannot_add(state)}")
    threads = options.threads or max(1, min(largest, MAX_THREADS))
    return WorkerPlan(0, options.device, threads, float(threads))


def _sized(plan: WorkerPlan, state: ClusterState, options: PlanOptions,
           addable: list[tuple[_Shape, str]]) -> WorkerPlan:
    """`plan` with its count: what the live nodes hold plus what added nodes would, capped by --workers."""
    live = sum(_workers_on(plan, _Shape(node.cpus, node.gpus)) for node in state.nodes)
    useful = [(shape, name) for shape, name in addable if _workers_on(plan, shape)]
    capacity = _within_max_resources(plan, live + sum(_workers_on(plan, shape) for shape, _ in useful),
                                     state.max_resources)
    notes = []
    if state.scaling is Scaling.UNKNOWN:
        count = options.workers or max(1, live)
        notes.append(f"no autoscaler configuration found ({state.source}); the {len(state.nodes)} node(s) "
                     f"present hold {live} worker(s): asking for {count}{' (--workers)' if options.workers else ''}")
    else:
        if not capacity:
            raise ValueError(f"no node of this cluster can hold a worker needing {plan.demand()}, "
                             f"and {_cannot_add(state)}")
        count = min(options.workers, capacity) if options.workers else capacity
        names = [name for _, name in useful]
        nodes = ", ".join(f"{names.count(name)} x {name}" for name in dict.fromkeys(names))
        notes.append(f"cluster capacity: {capacity} worker(s): {live} on the {len(state.nodes)} node(s) present"
                     + (f", {capacity - live} on nodes the autoscaler can add ({nodes}; node types from "
                        f"{state.source})" if capacity > live else ""))
        if options.workers and options.workers > capacity:
            notes.append(f"--workers {options.workers}: the cluster can hold {capacity}; asking for {capacity}")
    if any(node_type.max_count is None for node_type in state.node_types):
        notes.append(f"a node type has no maximum count: counted as {UNBOUNDED_NODES} nodes; "
                     "use --workers to ask for fewer workers")
    return WorkerPlan(count, plan.device, plan.threads, plan.num_cpus, plan.num_gpus, tuple(notes))


def _per_gpu_node(shape: _Shape, share: float) -> int:
    """Workers of `share` GPU that the GPUs of a node hold."""
    return int(shape.gpus / share + 1e-9)


def _workers_on(plan: WorkerPlan, shape: _Shape) -> int:
    """How many workers of `plan` one node of `shape` holds."""
    fits = [int(shape.cpus / plan.num_cpus + 1e-9)] if plan.num_cpus else []
    if plan.num_gpus:
        fits.append(_per_gpu_node(shape, plan.num_gpus))
    return min(fits, default=0)


def _within_max_resources(plan: WorkerPlan, workers: int, max_resources: Mapping[str, float]) -> int:
    """`workers`, fewer if the cluster-wide resource caps allow fewer."""
    for resource, per_worker in (("CPU", plan.num_cpus), ("GPU", plan.num_gpus)):
        if per_worker and resource in max_resources:
            workers = min(workers, int(max_resources[resource] / per_worker + 1e-9))
    return workers


def _addable_nodes(state: ClusterState) -> list[tuple[_Shape, str]]:
    """One entry per node the autoscaler may still add: its resources and node type.

    Live nodes are matched to node types by label, else by equal CPU and GPU counts (the
    autoscaler starts each node with its type's resources); the cluster-wide max_workers then
    bounds the worker nodes, preferring the largest nodes.
    """
    if state.scaling is not Scaling.AUTOSCALER:
        return []
    room = {node_type.name: UNBOUNDED_NODES if node_type.max_count is None else node_type.max_count
            for node_type in state.node_types}
    live_workers = 0
    for node in state.nodes:
        matched = node.node_type if node.node_type in room else None
        if matched is None and not node.is_head:
            matched = next((node_type.name for node_type in state.node_types
                            if room[node_type.name] > 0 and (node_type.cpus, node_type.gpus) == (node.cpus, node.gpus)),
                           None)
        if matched is not None:
            room[matched] -= 1
            live_workers += not node.is_head
    addable = [(_Shape(node_type.cpus, node_type.gpus), node_type.name)
               for node_type in sorted(state.node_types, key=lambda kind: (-kind.gpus, -kind.cpus))
               for _ in range(max(0, room[node_type.name]))]
    if state.max_worker_nodes is not None:
        addable = addable[:max(0, state.max_worker_nodes - live_workers)]
    return addable


def _cannot_add(state: ClusterState) -> str:
    if state.scaling is Scaling.STATIC:
        return "it cannot gain nodes (a local Ray started by this command)"
    if state.scaling is Scaling.AUTOSCALER:
        return f"its autoscaler cannot add one ({state.source})"
    return f"no autoscaler configuration was found ({state.source})"
