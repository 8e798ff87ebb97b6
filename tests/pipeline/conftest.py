"""A real Ray cluster for pipeline tests (`ray start --head` in its own process group), and helpers
to run the real `stylebatch` command against it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

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
    log = open(Path(temp_dir) / "ray-start.log", "w")
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
        log.close()
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
