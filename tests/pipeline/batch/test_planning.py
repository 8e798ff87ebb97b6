"""Worker planning as a pure function of the cluster given as data: live nodes, the node types an
autoscaler may add, and the run's options."""

from __future__ import annotations

import pytest

from pipeline.batch.planning import (
    UNBOUNDED_NODES,
    ClusterState,
    LiveNode,
    NodeType,
    PlanOptions,
    Scaling,
    plan_workers,
)

HEAD_CPU0 = LiveNode("head", cpus=0, gpus=0, is_head=True)
FAKE_GPU = NodeType("gpu_node", cpus=1, gpus=1, max_count=3)
L4 = NodeType("gpu_worker", cpus=4, gpus=1, max_count=8)


def autoscaling(*node_types: NodeType, nodes: tuple[LiveNode, ...] = (HEAD_CPU0,), max_worker_nodes: int | None = None,
                **extra: object) -> ClusterState:
    return ClusterState(nodes, Scaling.AUTOSCALER, node_types, max_worker_nodes, source="test config", **extra)


def test_head_without_cpus_and_no_worker_node_yet_asks_for_every_gpu_the_autoscaler_can_add():
    """Right after `ray up`: the head has CPU 0 and the GPU nodes are still booting (the ZeroDivisionError
    of the old planner)."""
    plan = plan_workers(autoscaling(FAKE_GPU), PlanOptions())
    assert (plan.count, plan.num_gpus, plan.num_cpus, plan.threads, plan.device) == (3, 1.0, 1.0, 1, "auto")
    assert plan.resources == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert plan.demand() == "GPU 1, CPU 1"
    assert plan.notes[0] == ("cluster capacity: 3 worker(s): 0 on the 1 node(s) present, 3 on nodes the "
                             "autoscaler can add (3 x gpu_node; node types from test config)")


def test_without_autoscaler_config_a_cpu0_head_waits_for_one_worker_instead_of_crashing():
    state = ClusterState((HEAD_CPU0,), Scaling.UNKNOWN, source="nothing found")
    plan = plan_workers(state, PlanOptions())
    assert (plan.count, plan.num_cpus, plan.num_gpus, plan.threads) == (1, 1.0, 0.0, 1)
    assert "no autoscaler configuration found (nothing found)" in plan.notes[0]
    assert plan_workers(state, PlanOptions(workers=4)).count == 4, "--workers is taken as is when growth is unknown"
    gpu = plan_workers(state, PlanOptions(gpus_per_worker=0.5))
    assert (gpu.count, gpu.num_gpus, gpu.num_cpus) == (1, 0.5, 1.0), "it may still get GPU nodes: wait for them"


def test_gpu_nodes_present_and_addable_are_counted_once():
    live_gpu = LiveNode("n1", cpus=4, gpus=1)  # matched to gpu_worker by its resources
    plan = plan_workers(autoscaling(L4, nodes=(HEAD_CPU0, live_gpu), max_worker_nodes=8), PlanOptions())
    assert (plan.count, plan.num_gpus, plan.num_cpus, plan.threads) == (8, 1.0, 1.0, 4)
    labelled = LiveNode("n2", cpus=3, gpus=1, node_type="gpu_worker")  # a label wins over resources
    assert plan_workers(autoscaling(L4, nodes=(HEAD_CPU0, labelled)), PlanOptions()).count == 8


def test_fractional_gpus_put_several_workers_on_each_gpu_with_a_share_of_its_cpus():
    quarter = plan_workers(autoscaling(L4), PlanOptions(gpus_per_worker=0.25))
    assert (quarter.count, quarter.num_gpus, quarter.num_cpus, quarter.threads) == (32, 0.25, 1.0, 1)
    half = plan_workers(autoscaling(FAKE_GPU), PlanOptions(gpus_per_worker=0.5))
    assert (half.count, half.num_gpus, half.num_cpus) == (6, 0.5, 0.5), "two per fake GPU node of one CPU"
    assert half.demand() == "GPU 0.5, CPU 0.5"
    third = plan_workers(autoscaling(NodeType("big", cpus=8, gpus=2, max_count=1)), PlanOptions(gpus_per_worker=0.3))
    assert (third.count, third.num_cpus) == (6, 1.0), "floor(2 / 0.3) = 6 per node"


def test_cpu_only_node_types_get_cpu_workers_with_up_to_eight_threads():
    cpu16 = NodeType("cpu16", cpus=16, gpus=0, max_count=4)
    plan = plan_workers(autoscaling(cpu16), PlanOptions())
    assert (plan.count, plan.threads, plan.num_cpus, plan.num_gpus) == (8, 8, 8.0, 0.0)
    assert plan.resources == {"num_cpus": 8.0, "num_gpus": 0.0} and plan.demand() == "CPU 8"
    assert plan_workers(autoscaling(cpu16), PlanOptions(threads=4)).count == 16
    with pytest.raises(ValueError, match="--threads 32 is more than the 16 CPUs of the largest node"):
        plan_workers(autoscaling(cpu16), PlanOptions(threads=32))
    with pytest.raises(ValueError, match="--device cuda: no node of this cluster has a GPU, and its autoscaler"):
        plan_workers(autoscaling(cpu16), PlanOptions(device="cuda"))


def test_workers_option_caps_the_count_and_says_when_the_cluster_holds_fewer():
    assert plan_workers(autoscaling(FAKE_GPU), PlanOptions(workers=2)).count == 2
    capped = plan_workers(autoscaling(FAKE_GPU), PlanOptions(workers=10))
    assert capped.count == 3
    assert "--workers 10: the cluster can hold 3; asking for 3" in capped.notes


def test_cluster_wide_limits_bound_the_nodes_that_can_be_added():
    assert plan_workers(autoscaling(L4, max_worker_nodes=2), PlanOptions()).count == 2
    cpu_type = NodeType("cpu8", cpus=8, gpus=0, max_count=5)
    mixed = plan_workers(autoscaling(cpu_type, L4, max_worker_nodes=3), PlanOptions())
    assert (mixed.count, mixed.num_gpus) == (3, 1.0), "GPU nodes come first within max_workers"
    gpu_capped = plan_workers(autoscaling(L4, max_resources={"GPU": 2}), PlanOptions(gpus_per_worker=0.5))
    assert gpu_capped.count == 4


def test_a_node_type_without_maximum_counts_as_many_nodes_and_says_so():
    plan = plan_workers(autoscaling(NodeType("any", cpus=4, gpus=1, max_count=None)), PlanOptions())
    assert plan.count == UNBOUNDED_NODES
    assert any("no maximum count" in note for note in plan.notes)


def test_a_local_single_machine_ray_uses_its_cores_or_its_gpus():
    laptop = ClusterState((LiveNode("local", cpus=2, gpus=0, is_head=True),), Scaling.STATIC)
    plan = plan_workers(laptop, PlanOptions())
    assert (plan.count, plan.threads, plan.num_cpus, plan.num_gpus) == (1, 2, 2.0, 0.0)
    assert plan_workers(laptop, PlanOptions(threads=1)).count == 2
    with pytest.raises(ValueError, match="--threads 4 is more than the 2 CPUs of the largest node, and it cannot "
                                         "gain nodes"):
        plan_workers(laptop, PlanOptions(threads=4))
    with pytest.raises(ValueError, match=r"--gpus-per-worker 0\.5: no node of this cluster has a GPU"):
        plan_workers(laptop, PlanOptions(gpus_per_worker=0.5))
    workstation = ClusterState((LiveNode("local", cpus=16, gpus=2, is_head=True),), Scaling.STATIC)
    gpu_plan = plan_workers(workstation, PlanOptions(gpus_per_worker=0.25, device="cpu"))
    assert (gpu_plan.count, gpu_plan.num_gpus, gpu_plan.num_cpus, gpu_plan.threads, gpu_plan.device) == \
        (8, 0.25, 1.0, 2, "cpu")


def test_a_cluster_that_can_never_hold_a_worker_is_an_error_not_a_wait():
    head_only = autoscaling()
    with pytest.raises(ValueError, match="no node of this cluster has a CPU for a worker"):
        plan_workers(head_only, PlanOptions())
    tiny_gpu = autoscaling(NodeType("small", cpus=1, gpus=1, max_count=0))
    with pytest.raises(ValueError, match="no node of this cluster"):
        plan_workers(tiny_gpu, PlanOptions())


@pytest.mark.parametrize("options, message", [
    (PlanOptions(gpus_per_worker=0), "--gpus-per-worker 0: must be more than 0 and at most 1"),
    (PlanOptions(gpus_per_worker=1.5), "--gpus-per-worker 1.5: must be more than 0 and at most 1"),
    (PlanOptions(device="tpu"), "--device 'tpu': must be one of auto, cpu, cuda"),
    (PlanOptions(workers=0), "--workers 0: must be at least 1"),
])
def test_unusable_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        plan_workers(autoscaling(FAKE_GPU), options)
