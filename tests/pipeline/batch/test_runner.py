"""`stylebatch submit` end to end on a real Ray cluster and a real S3 server: bad rows fail alone,
a killed worker is replaced, an interrupted run resumes without redoing or corrupting anything."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from PIL import Image

from stylecore import FusionParams
from tests.demo_images import IMAGES
from tests.pipeline.conftest import TINY, local_results, start_stylebatch, stylebatch


def upload(client, bucket: str, key: str, data: bytes) -> str:
    client.put_object(Bucket=bucket, Key=key, Body=data)
    return f"s3://{bucket}/{key}"


def s3_results(client, bucket: str, prefix: str):
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    tables = [pq.read_table(io.BytesIO(client.get_object(Bucket=bucket, Key=key)["Body"].read()))
              for key in keys if key.endswith(".parquet")]
    return tables


def test_s3_run_with_bad_rows_records_every_row_once_and_keeps_secrets(s3_server, s3_bucket, ray_head):
    client = s3_server.client()
    cat = upload(client, s3_bucket, "in/cat.png", (IMAGES / "content/cat_chelsea.png").read_bytes())
    zebra = upload(client, s3_bucket, "in/zebra.jpg", (IMAGES / "style/texture_zebra.jpg").read_bytes())
    good = (IMAGES / "content/portrait_astronaut.png").read_bytes()
    corrupt = upload(client, s3_bucket, "in/corrupt.png", good[: len(good) // 3])
    manifest = "\n".join([
        "content,style,alpha_local,output",
        f"{cat},{zebra},,",                                   # 1 ok, derived name
        "in/cat.png,style-copy/../in/zebra.jpg,2e-3,named/cat.png",  # 2 ok, relative to the manifest
        f"s3://{s3_bucket}/in/missing.png,{zebra},,",          # 3 missing object
        f"{corrupt},{zebra},,",                               # 4 corrupt image
        f"{cat},{zebra},abc,",                                # 5 bad alpha
        f"{cat},{zebra},,../escape.png",                      # 6 output escaping the prefix
        f"{cat},{zebra},-1,",                                 # 7 negative alpha
        f"gs://elsewhere/cat.png,{zebra},,",                  # 8 unknown scheme
        f"{cat},{zebra},2e-3,named/cat.png",                  # 9 duplicate output of row 2
    ]) + "\n"
    upload(client, s3_bucket, "manifest.csv", manifest.encode())

    done = stylebatch("submit", f"s3://{s3_bucket}/manifest.csv", "--output", f"s3://{s3_bucket}/out",
                      "--address", ray_head.address, *TINY)
    assert done.returncode == 1, done.stderr
    logs = done.stdout + done.stderr
    assert "invalid row 5, column alpha_local: 'abc' is not a number" in logs
    assert "2 ok, 0 skipped, 7 failed of 9 rows" in logs

    tables = s3_results(client, s3_bucket, "out/_results/")
    assert len(tables) == 1, "a finished run leaves one compacted results file"
    rows = {row["row"]: row for row in tables[0].to_pylist()}
    assert sorted(rows) == list(range(1, 10)) and tables[0].num_rows == 9
    assert [rows[n]["status"] for n in range(1, 10)] == ["ok", "ok"] + ["failed"] * 7
    expected_errors = {
        3: f"s3://{s3_bucket}/in/missing.png: no such object",
        4: "corrupt or truncated",
        5: "column alpha_local: 'abc' is not a number",
        6: "column output: '../escape.png' contains '..'",
        7: "column alpha_local: '-1' is negative",
        8: "column content: 'gs://elsewhere/cat.png': unsupported scheme 'gs'",
        9: f"column output: s3://{s3_bucket}/out/named/cat.png is already the output of row 2",
    }
    for row, fragment in expected_errors.items():
        assert fragment in rows[row]["error"], (row, rows[row]["error"])
    assert rows[2]["alpha_local"] == 2e-3 and rows[1]["alpha_local"] == FusionParams().alpha_local
    assert rows[2]["style"] == zebra and rows[1]["loss_total"] > 0 and rows[1]["device"] == "cpu"

    for row in (1, 2):
        key = rows[row]["output"].removeprefix(f"s3://{s3_bucket}/")
        image = Image.open(io.BytesIO(client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()))
        assert image.size == (32, 21)

    table_text = str(tables[0].to_pylist())
    ray_logs = [path.read_text(errors="replace") for path in ray_head.temp_dir.rglob("*")
                if path.is_file() and path.suffix in (".log", ".out", ".err", ".txt")]
    assert ray_logs, "the Ray cluster's logs must be there to be checked"
    for secret in (s3_server.access_key, s3_server.secret_key):
        assert secret not in logs and secret not in table_text
        assert not any(secret in text for text in ray_logs), "a credential leaked into Ray's logs"


def make_local_manifest(folder: Path, rows: int) -> Path:
    """`rows` distinct pairs of the shipped images, written as a CSV in `folder`."""
    contents = ["cat_chelsea.png", "portrait_astronaut.png", "still_life_coffee.png"]
    styles = ["texture_zebra.jpg", "starry_night_vangogh.jpg", "great_wave_hokusai.jpg", "texture_grass.png"]
    lines = ["content,style"] + [f"{IMAGES}/content/{contents[i % 3]},{IMAGES}/style/{styles[i % 4]}"
                                 for i in range(rows)]
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


# Rows long enough (a few seconds each) to be caught in the middle.
SLOW = ("--size", "64", "--levels", "2", "--iters", "15")


def kill_a_busy_worker(timeout: float = 120) -> int:
    """SIGKILL a worker process while it is stylizing a row; returns its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in psutil.process_iter(["pid", "cmdline"]):
            if "ray::RowProcessor.process" in " ".join(process.info["cmdline"] or []):
                time.sleep(0.5)
                process.send_signal(signal.SIGKILL)
                return process.info["pid"]
        time.sleep(0.1)
    raise AssertionError("no worker was ever busy with a row")


@pytest.mark.parametrize("retries, expect_failed", [(2, 0), (0, 1)])
def test_a_worker_killed_mid_row_is_replaced_and_every_row_recorded_once(tmp_path, ray_head,
                                                                         retries, expect_failed):
    manifest = make_local_manifest(tmp_path, 4)
    output = tmp_path / "out"
    run = start_stylebatch("submit", str(manifest), "--output", str(output), "--address", ray_head.address,
                           "--retries", str(retries), *SLOW)
    kill_a_busy_worker()
    _, stderr = run.communicate(timeout=300)
    table = local_results(output / "_results")
    assert sorted(table["row"].to_pylist()) == [1, 2, 3, 4]
    statuses = table["status"].to_pylist()
    assert statuses.count("failed") == expect_failed and statuses.count("ok") == 4 - expect_failed
    assert run.returncode == (1 if expect_failed else 0), stderr
    if expect_failed:
        error = table.filter(table["status"].to_numpy(zero_copy_only=False) == "failed")["error"][0].as_py()
        assert "worker died while processing this row 1 time(s)" in error
    assert len(list(output.glob("*.png"))) == 4 - expect_failed


def test_interrupted_run_keeps_finished_rows_and_the_rerun_skips_them(tmp_path):
    """On the embedded default (a local Ray owned by the command), Ctrl-C in a terminal sends
    SIGINT to the command and every Ray process it started: all must stop cleanly."""
    manifest = make_local_manifest(tmp_path, 5)
    output = tmp_path / "out"
    command = ("submit", str(manifest), "--output", str(output), *SLOW)
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    first = start_stylebatch(*command, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(output.glob("*.png")) and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGINT)
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 130, stderr
    assert "interrupted" in stdout and "run the same command again to continue" in stdout

    interrupted = local_results(output / "_results")
    finished = {row["output"]: row for row in interrupted.to_pylist() if row["status"] == "ok"}
    assert 1 <= len(finished) < 5
    for image_path in output.glob("*.png"):
        Image.open(image_path).load()  # every image at a final name is complete
    written = {str(path): path.stat().st_mtime_ns for path in output.glob("*.png")}

    rerun = stylebatch(*command, env=env)
    assert rerun.returncode == 0, rerun.stderr
    table = local_results(output / "_results")
    second_run = table.filter(table["run_id"].to_numpy(zero_copy_only=False) != interrupted["run_id"][0].as_py())
    rows = {row["row"]: row for row in second_run.to_pylist()}
    assert sorted(rows) == [1, 2, 3, 4, 5] and second_run.num_rows == 5
    for row in rows.values():
        expected = "skipped" if row["output"] in written else "ok"
        assert row["status"] == expected, row
    assert all(rows[r]["status"] == "skipped" for r in rows if rows[r]["output"] in finished)
    assert all(Path(path).stat().st_mtime_ns == mtime for path, mtime in written.items()), "nothing redone"
    assert len(list(output.glob("*.png"))) == 5


def test_strict_runs_nothing_when_a_row_is_invalid(tmp_path, ray_head):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"content,style,alpha_global\n{IMAGES}/content/cat_chelsea.png,"
                        f"{IMAGES}/style/texture_zebra.jpg,\n,{IMAGES}/style/texture_zebra.jpg,oops\n")
    done = stylebatch("submit", str(manifest), "--output", str(tmp_path / "out"), "--address", ray_head.address,
                      "--strict", *TINY)
    assert done.returncode == 2
    assert "invalid row 2, column content: missing value" in done.stderr
    assert "nothing was run" in done.stderr
    assert not (tmp_path / "out").exists()


def test_more_workers_than_the_cluster_fits_still_finishes_and_too_many_threads_is_refused(tmp_path, ray_head):
    manifest = make_local_manifest(tmp_path, 3)
    crowded = stylebatch("submit", str(manifest), "--output", str(tmp_path / "out"), "--address", ray_head.address,
                         "--workers", "3", "--threads", "1", *TINY)
    assert crowded.returncode == 0, crowded.stderr
    assert "3 ok, 0 skipped, 0 failed of 3 rows" in crowded.stdout
    too_wide = stylebatch("submit", str(manifest), "--output", str(tmp_path / "out2"), "--address",
                          ray_head.address, "--threads", "4", *TINY)
    assert too_wide.returncode == 2
    assert "--threads 4 is more than the 2 CPUs of the largest node" in too_wide.stderr
