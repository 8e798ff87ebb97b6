"""One worker's job handling with the real network: a good row writes its image, a bad row fails
with a message naming the file, and a row that killed its worker too often is not tried again."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from pipeline.batch.manifest import Job
from pipeline.batch.naming import params_fingerprint
from pipeline.storage.store import Storage, parse_location
from pipeline.batch.worker import RowProcessor
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
    assert result["evaluations"] == 3 and result["iters"] == 3 and result["device"] == "cpu"
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
