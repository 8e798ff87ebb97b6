"""`stylebatch submit` on an autoscaling cluster simulated on this machine (Ray's fake multi-node
provider): submitted right after the head starts, before any worker node exists, a run waits for the
nodes its workers make the autoscaler add, and uses them; fractional GPUs put several workers on one."""

from __future__ import annotations

import re

from tests.pipeline.conftest import FakeCluster, local_results, pairs_manifest, stylebatch

# TINY's sizes with enough iterations (about a second a row here) that the first worker to start
# cannot finish the manifest before the others have.
ROWS = ("--size", "32", "--levels", "1", "--iters", "20")


def unwrapped(done) -> str:
    """stdout and stderr with the terminal's line wrapping undone."""
    return " ".join((done.stdout + done.stderr).split())


def ready_nodes(logs: str) -> list[str]:
    return re.findall(r"ready on node (\w+)", logs)


def test_a_run_submitted_before_any_worker_node_exists_waits_for_them_and_uses_several(tmp_path,
                                                                                       fake_gpu_cluster: FakeCluster):
    manifest = pairs_manifest(tmp_path, 12)
    output = tmp_path / "out"
    done = stylebatch("submit", str(manifest), "--output", str(output), "--address", fake_gpu_cluster.address,
                      "--device", "cpu", *ROWS, env=fake_gpu_cluster.driver_environment(), timeout=600)
    logs = unwrapped(done)
    assert done.returncode == 0, logs
    assert "Traceback" not in logs
    assert "asking for 3 worker(s), each with GPU 1, CPU 1" in logs
    assert "waiting for worker nodes: 3 worker(s) need GPU 1, CPU 1 each" in logs
    table = local_results(output / "_results")
    assert table["status"].to_pylist() == ["ok"] * 12
    nodes = set(table["worker_node"].to_pylist())
    assert len(nodes) >= 2, f"every row ran on one node: {nodes}"
    assert nodes <= set(ready_nodes(logs))
    assert all(device == "cpu" for device in table["device"].to_pylist())


def test_half_a_gpu_per_worker_puts_two_workers_on_one_gpu_node(tmp_path, fake_gpu_cluster: FakeCluster):
    # 12 rows, as above: with 6, under a full test run's load, the first worker once finished them all
    # before the second had loaded its network, and the pool rightly released the second unstarted.
    manifest = pairs_manifest(tmp_path, 12)
    output = tmp_path / "out"
    done = stylebatch("submit", str(manifest), "--output", str(output), "--address", fake_gpu_cluster.address,
                      "--device", "cpu", "--gpus-per-worker", "0.5", "--workers", "2", *ROWS,
                      env=fake_gpu_cluster.driver_environment(), timeout=600)
    logs = unwrapped(done)
    assert done.returncode == 0, logs
    assert "Traceback" not in logs
    assert "asking for 2 worker(s), each with GPU 0.5, CPU 0.5" in logs
    ready = ready_nodes(logs)
    assert len(ready) == 2 and len(set(ready)) == 1, f"not two workers on one node: {ready}"
    table = local_results(output / "_results")
    assert table["status"].to_pylist() == ["ok"] * 12
    assert set(table["worker_node"].to_pylist()) == set(ready)
