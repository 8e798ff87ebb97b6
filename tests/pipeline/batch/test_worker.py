"""One worker's job handling with the real network: a good row writes its image, a bad row fails
with a message naming the file, a row that killed its worker too often is not tried again, and
rows in flight together read and write while another synthesizes."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from PIL import Image

from pipeline.batch.manifest import Job
from pipeline.batch.naming import params_fingerprint
from pipeline.batch.records import job_record
from pipeline.batch.worker import CONCURRENT_ROWS, RowProcessor, memory_fraction
from pipeline.storage.store import Storage, parse_location
from stylecore import FusionParams
from tests.demo_images import IMAGES

TINY = FusionParams(size=32, levels=1, iterations=3)


@pytest.fixture(scope="module")
def processor() -> RowProcessor:
    return RowProcessor(Storage(), "caffe", "cpu", threads=2)


def job(tmp_path, content: str, style: str, params: FusionParams = TINY) -> Job:
    return Job(1, parse_location(content), parse_location(style), parse_location(str(tmp_path / "out.png")),
               params)


def test_a_good_row_writes_its_image_and_a_full_record(processor, tmp_path):
    result = processor.process(job(tmp_path, str(IMAGES / "content/cat_chelsea.png"),
                                   str(IMAGES / "style/texture_brick.png")))
    assert result["status"] == "ok", result
    assert Image.open(tmp_path / "out.png").size == (32, 21)
    assert result["loss_total"] == pytest.approx(result["loss_global"] + result["loss_local"]
                                                 + result["loss_content"])
    assert result["evaluations"] == 4 and result["iters"] == 3 and result["device"] == "cpu"  # the start + 3 steps
    assert result["worse_than_start"] is False and result["rejected_steps"] >= 0
    assert min(result["load_seconds"], result["synthesis_seconds"], result["write_seconds"]) >= 0
    assert result["started_at"] <= result["finished_at"] and result["stylebatch_version"]
    assert json.loads(result["params"]) == json.loads(json.dumps(params_fingerprint(TINY)))


def test_a_corrupt_content_image_fails_the_row_naming_the_file(processor, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes((IMAGES / "content/cat_chelsea.png").read_bytes()[:3000])
    result = processor.process(job(tmp_path, str(broken), str(IMAGES / "style/texture_brick.png")))
    assert result["status"] == "failed" and result["error"].startswith(f"{broken}: corrupt or truncated")
    assert not (tmp_path / "out.png").exists()


def test_a_style_too_small_for_the_pyramid_names_the_style(processor, tmp_path):
    sliver = tmp_path / "sliver.png"
    Image.new("RGB", (400, 8), "red").save(sliver)
    result = processor.process(job(tmp_path, str(IMAGES / "content/cat_chelsea.png"), str(sliver),
                                   FusionParams(size=64, levels=2, iterations=2)))
    assert result["status"] == "failed"
    assert result["error"].startswith(f"{sliver}: style image is too small")


def test_a_row_started_too_often_is_failed_without_running(tmp_path):
    calls = []
    processor = RowProcessor(Storage(), "caffe", "cpu", count_attempt=lambda row: calls.append(row) or 3,
                             max_attempts=2)
    result = processor.process(job(tmp_path, str(IMAGES / "content/cat_chelsea.png"),
                                   str(IMAGES / "style/texture_brick.png")))
    assert calls == [1] and result["status"] == "failed"
    assert "the worker died while processing this row 2 time(s)" in result["error"]
    assert not (tmp_path / "out.png").exists()


def synthesis_interval(record: dict) -> tuple:
    """(start, end) of a record's synthesis: it ends where its write begins."""
    end = record["finished_at"] - timedelta(seconds=record["write_seconds"])
    return end - timedelta(seconds=record["synthesis_seconds"]), end


def test_rows_in_flight_together_read_the_next_row_while_one_synthesizes(processor, tmp_path):
    """As Ray runs them in a worker actor (max_concurrency threads): the device is used by one row at a
    time, and the next row's images are read while it is."""
    contents = ["cat_chelsea.png", "portrait_astronaut.png", "still_life_coffee.png"]
    jobs = [Job(row, parse_location(str(IMAGES / "content" / name)),
                parse_location(str(IMAGES / "style/texture_brick.png")),
                parse_location(str(tmp_path / f"out{row}.png")), TINY) for row, name in enumerate(contents, 1)]
    with ThreadPoolExecutor(CONCURRENT_ROWS) as threads:
        records = list(threads.map(processor.process, jobs))
    assert [record["status"] for record in records] == ["ok"] * 3
    records.sort(key=lambda record: synthesis_interval(record)[0])
    for first, second in itertools.pairwise(records):
        first_start, first_end = synthesis_interval(first)
        assert first_end <= synthesis_interval(second)[0], "two syntheses held the device at once"
        assert first_start <= second["started_at"] < first_end, "the next row was not read during a synthesis"
        assert second["started_at"] + timedelta(seconds=second["load_seconds"]) <= synthesis_interval(second)[0]


def test_records_name_the_worker_node_only_inside_ray(processor, tmp_path):
    result = processor.process(job(tmp_path, str(IMAGES / "content/cat_chelsea.png"),
                                   str(IMAGES / "style/texture_brick.png")))
    assert result["worker_node"] is None and result["worker_host"]
    assert "worker_node" not in job_record(job(tmp_path, "a.png", "b.png"), "caffe"), \
        "rows no worker ran have no node (null in the table)"


def test_a_gpu_share_caps_the_allocator_below_the_share_leaving_room_for_each_cuda_context():
    gib = 1 << 30
    assert memory_fraction(0.25, 80 * gib) == pytest.approx(0.25 - 1 / 80)
    assert memory_fraction(1.0, 24 * gib) == pytest.approx(1 - 1 / 24)
    assert 4 * memory_fraction(0.25, 24 * gib) + 4 * gib / (24 * gib) <= 1.0 + 1e-9, "four workers fit one GPU"
    assert memory_fraction(0.01, 8 * gib) == 0.01, "never zero"


def test_importing_the_worker_module_does_not_import_torch():
    """The driver imports it (job_record) and must stay small."""
    code = "import sys, pipeline.batch.pool, pipeline.batch.worker; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
