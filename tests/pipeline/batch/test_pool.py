"""The worker pool on a real Ray cluster: a worker runs rows concurrently (reading one while another
synthesizes), workers are released when the rows run out, pending ones included, and a run that
gets no worker in time stops with one line and exit code 2."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import ray
from ray.exceptions import RayActorError

from pipeline.batch.manifest import Job
from pipeline.batch.planning import WorkerPlan
from pipeline.batch.pool import WorkerPool
from pipeline.storage.store import Storage, parse_location
from stylecore import FusionParams
from tests.demo_images import IMAGES
from tests.pipeline.conftest import TINY, pairs_manifest, stylebatch

TINY_PARAMS = FusionParams(size=32, levels=1, iterations=3)


@pytest.fixture
def driver(ray_head) -> Iterator[str]:
    """This test process as a Ray driver of the module's cluster; yields the head's node id."""
    ray.init(address=ray_head.address, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield ray.nodes()[0]["NodeID"]
    finally:
        ray.shutdown()


def jobs(tmp_path, count: int) -> list[Job]:
    contents = sorted((IMAGES / "content").glob("*.png"))
    return [Job(row, parse_location(str(contents[row % len(contents)])),
                parse_location(str(IMAGES / "style/texture_brick.png")),
                parse_location(str(tmp_path / f"out{row}.png")), TINY_PARAMS) for row in range(1, count + 1)]


def run_all(pool: WorkerPool, work: list[Job]) -> list[dict]:
    records = [record for job in work for record in pool.submit(job)]
    return records + list(pool.drain())


def new_pool(plan: WorkerPlan, messages: list[str]) -> WorkerPool:
    return WorkerPool(plan, Storage(), "caffe", 0, "test", messages.append, threading.Event())


def assert_released(pool: WorkerPool, timeout: float = 30) -> None:
    """Every worker of `pool` is dead (ray.kill takes effect asynchronously)."""
    deadline = time.monotonic() + timeout
    for index, actor in enumerate(pool.actors):
        while True:
            try:
                ray.get(actor.describe.remote(), timeout=timeout)
            except RayActorError:
                break
            assert time.monotonic() < deadline, f"worker {index + 1} is still alive"
            time.sleep(0.2)


def test_one_worker_reads_the_next_row_while_it_synthesizes_and_is_released_at_the_end(tmp_path, driver):
    messages: list[str] = []
    pool = new_pool(WorkerPlan(1, "cpu", 2, 2.0), messages)
    work = jobs(tmp_path, 3)
    records = [record for job in work for record in pool.submit(job)]
    info = ray.get(pool.actors[0].describe.remote())
    assert info["cuda_alloc_conf"] == "expandable_segments:True" and info["node"] == driver
    records += list(pool.drain())
    assert sorted(record["row"] for record in records) == [1, 2, 3]
    assert all(record["status"] == "ok" and record["worker_node"] == driver for record in records), records

    def synthesis(record: dict) -> tuple:
        end = record["finished_at"] - timedelta(seconds=record["write_seconds"])
        return end - timedelta(seconds=record["synthesis_seconds"]), end

    records.sort(key=lambda record: synthesis(record)[0])
    overlapped = [synthesis(first)[0] <= second["started_at"] < synthesis(first)[1]
                  for first, second in itertools.pairwise(records)]
    assert any(overlapped), "no row was read while another synthesized"
    assert f"worker 1 of 1 ready on node {driver} (cpu)" in messages
    assert_released(pool)


def test_idle_and_never_started_workers_are_released_when_the_rows_run_out(tmp_path, driver):
    """Three one-CPU workers on a two-CPU cluster: one waits for a node that never comes."""
    messages: list[str] = []
    pool = new_pool(WorkerPlan(3, "cpu", 1, 1.0), messages)
    records = run_all(pool, jobs(tmp_path, 7))
    assert sorted(record["row"] for record in records) == list(range(1, 8))
    assert all(record["status"] == "ok" for record in records), records
    assert len(pool.actors) == 3 and pool.released == {0, 1, 2}
    assert_released(pool)


def test_a_pool_asks_for_workers_only_as_jobs_need_them(tmp_path, driver):
    pool = new_pool(WorkerPlan(3, "cpu", 1, 1.0), [])
    records = run_all(pool, jobs(tmp_path, 2))
    assert len(pool.actors) == 1 and [record["status"] for record in records] == ["ok", "ok"]


def test_no_worker_within_the_wait_is_one_line_and_exit_code_2(tmp_path, ray_head):
    """The cluster (no autoscaler configuration readable) has no GPU; the run waits, then gives up."""
    manifest = pairs_manifest(tmp_path, 2)
    done = stylebatch("submit", str(manifest), "--output", str(tmp_path / "out"), "--address", ray_head.address,
                      "--gpus-per-worker", "0.5", "--wait-for-workers", "0.1", *TINY,
                      env={**os.environ, "HOME": str(tmp_path)})  # no ~/ray_bootstrap_config.yaml
    logs = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2, logs
    assert "Traceback" not in logs
    assert "no autoscaler configuration found" in logs
    assert "waiting for worker nodes: 1 worker(s) need GPU 0.5, CPU 1 each" in logs
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no worker started within 0.1 min (--wait-for-workers)" in logs
