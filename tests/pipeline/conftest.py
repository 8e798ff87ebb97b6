"""A real Ray cluster for pipeline tests (`ray start --head` in its own process group), a real
autoscaling one simulated on this machine (Ray's fake multi-node provider), and helpers to run the
real `stylebatch` command against them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from tests.demo_images import IMAGES

RAY = Path(sys.executable).with_name("ray")
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class RayHead:
    """A running test cluster: where to connect, and the folder holding its state and logs."""

    address: str
    temp_dir: Path


@pytest.fixture(scope="module")
def ray_head(s3_server) -> Iterator[RayHead]:
    """A 2-CPU Ray head for this module, started after the S3 server so workers inherit AWS_*.

    Ports are chosen free (none of Ray's fixed defaults), state lives in a short temp dir, and
    the whole process group is stopped at the end.
    """
    temp_dir = tempfile.mkdtemp(prefix="sbray")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    port = free_port()
    command = [str(RAY), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
               "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}",
               f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
               "--min-worker-port=0", "--max-worker-port=0"]
    with open(Path(temp_dir) / "ray-start.log", "w") as log:  # the child keeps its own copy of the descriptor
        head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_ready(head, temp_dir)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RAY_AUTH_MODE", "disabled")
            patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
            patch.delenv("RAY_ADDRESS", raising=False)
            yield RayHead(f"127.0.0.1:{port}", Path(temp_dir))
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_until_ready(head: subprocess.Popen, temp_dir: str, timeout: float = 60.0) -> None:
    log_path = Path(temp_dir) / "ray-start.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited early:\n{log_path.read_text()[-3000:]}")
        if "block forever" in log_path.read_text():
            return
        time.sleep(0.2)
    raise RuntimeError(f"ray start not ready after {timeout} s:\n{log_path.read_text()[-3000:]}")


def stylebatch(*args: str, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    """Run the real command line (`python -m pipeline ...`) and capture its output."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=popen.pop("cwd", REPO), **popen)


def start_stylebatch(*args: str, **popen) -> subprocess.Popen:
    """Start the real command line without waiting for it."""
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=popen.pop("cwd", REPO), **popen)


def local_results(folder: Path) -> pa.Table:
    """Every results row under a local results folder, sorted by run and row."""
    table = ds.dataset(str(folder), format="parquet").to_table()
    return table.sort_by([("run_id", "ascending"), ("row", "ascending")])


TINY = ("--size", "32", "--levels", "1", "--iters", "3")


@dataclass(frozen=True)
class FakeCluster:
    """A running fake autoscaling cluster: where to connect, its state folder, its autoscaler config."""

    address: str
    temp_dir: Path
    autoscaling_config: Path

    def driver_environment(self) -> dict[str, str]:
        """The environment of a `stylebatch submit` run against it: the autoscaler config it reads, as
        a driver on the head of a `ray up` cluster reads ~/ray_bootstrap_config.yaml."""
        return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                "STYLEBATCH_AUTOSCALING_CONFIG": str(self.autoscaling_config)}


def fake_cluster_config(gcs_address: str, head_resources: dict[str, float],
                        worker_types: dict[str, dict[str, Any]], idle_timeout_minutes: float) -> dict[str, Any]:
    """An autoscaler config for Ray's fake multi-node provider: each node it launches is a raylet on
    this machine with the declared resources (GPUs included, none of them real)."""
    worker_max = sum(node_type["max_workers"] for node_type in worker_types.values())
    return {
        "cluster_name": "stylebatch-fake", "max_workers": worker_max, "upscaling_speed": 10.0,
        "idle_timeout_minutes": idle_timeout_minutes,
        "provider": {"type": "fake_multinode", "gcs_address": gcs_address, "launch_multiple": True,
                     "use_node_id_as_ip": True, "disable_node_updaters": True, "disable_launch_config_check": True},
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {"resources": head_resources, "node_config": {}, "max_workers": 0},
            **{name: {"node_config": {}, **node_type} for name, node_type in worker_types.items()}},
        "auth": {"ssh_user": "ubuntu"}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
        "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


@contextmanager
def fake_autoscaling_cluster(worker_types: dict[str, dict[str, Any]], head_cpus: int = 0,
                             idle_timeout_minutes: float = 0.2) -> Iterator[FakeCluster]:
    """A head (`ray start --head --autoscaling-config`, RAY_FAKE_CLUSTER=1) whose autoscaler launches fake
    nodes of `worker_types` for pending work.

    Unlike Ray's AutoscalingCluster, which runs `ray stop --force` (every Ray process on the machine),
    this stops only what it started: the head runs in its own process group, and the autoscaler
    starts the fake nodes' raylets, and they their workers, inside it. Free ports, its own temp dir.
    """
    temp_dir = Path(tempfile.mkdtemp(prefix="sbfake"))
    port = free_port()
    config_path = temp_dir / "autoscaling.json"
    config = fake_cluster_config(f"127.0.0.1:{port}", {"CPU": head_cpus}, worker_types, idle_timeout_minutes)
    config_path.write_text(json.dumps(config))
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
           "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    command = [str(RAY), "start", "--head", "--block", f"--port={port}", f"--num-cpus={head_cpus}", "--num-gpus=0",
               "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}",
               f"--autoscaling-config={config_path}", f"--ray-client-server-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-port={free_port()}",
               "--min-worker-port=0", "--max-worker-port=0"]
    with open(temp_dir / "ray-start.log", "w") as log:
        head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_ready(head, str(temp_dir))
        yield FakeCluster(f"127.0.0.1:{port}", temp_dir, config_path)
    finally:
        _stop_process_group(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _stop_process_group(leader: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the leader's process group, SIGKILL what is left, and wait until none of it is left."""
    os.killpg(leader.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        leader.wait(timeout=2)  # nothing to save: its state is a temp dir
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(leader.pid, signal.SIGKILL)
        except ProcessLookupError:
            break
        leader.poll()
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes of group {leader.pid} outlived SIGKILL")
        time.sleep(0.1)


FAKE_GPU_NODE = {"resources": {"CPU": 1, "GPU": 1}, "min_workers": 0, "max_workers": 3}


@pytest.fixture
def fake_gpu_cluster() -> Iterator[FakeCluster]:
    """A head with CPU 0 and no worker node, whose autoscaler may add up to 3 nodes of CPU 1, GPU 1: a
    `ray up cluster.yaml` moments after it returns."""
    with fake_autoscaling_cluster({"gpu_node": FAKE_GPU_NODE}) as cluster:
        yield cluster


def pairs_manifest(folder: Path, rows: int) -> Path:
    """`rows` distinct (content, style) pairs of the shipped images, as a CSV in `folder`."""
    contents = sorted((IMAGES / "content").glob("*.png"))
    styles = sorted([*(IMAGES / "style").glob("*.png"), *(IMAGES / "style").glob("*.jpg")])
    lines = ["content,style"] + [f"{contents[i % len(contents)]},{styles[i % len(styles)]}" for i in range(rows)]
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest
