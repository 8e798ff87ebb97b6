"""`stylebatch submit` under faults, on the real components: a killed driver, concurrent runs, unusable
locations, a full disk, symlinks out of the output folder, rows that could never be written.

Every test checks the promises of the README: nothing lost (every row recorded, finished work kept),
nothing done twice (each row computed once, no output overwritten), and one clear line per problem."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.batch.runs import read_runs
from pipeline.storage.store import Storage, parse_location
from tests.demo_images import IMAGES
from tests.pipeline.batch.test_runner import SLOW, make_local_manifest
from tests.pipeline.conftest import TINY, local_results, start_stylebatch, stylebatch


def outputs_of(folder: Path) -> dict[str, int]:
    """{image path: mtime in ns} of every image under `folder` (the results folder left out)."""
    return {str(path): path.stat().st_mtime_ns for path in folder.rglob("*.png") if "_results" not in path.parts}


def rows_by_status(table: pa.Table) -> dict[str, list[int]]:
    statuses: dict[str, list[int]] = {}
    for row in table.to_pylist():
        statuses.setdefault(row["status"], []).append(row["row"])
    return {status: sorted(rows) for status, rows in statuses.items()}


def assert_no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


def test_a_driver_killed_with_sigkill_loses_no_record_and_the_rerun_does_each_row_once(tmp_path, ray_head,
                                                                                       monkeypatch):
    monkeypatch.setenv("STYLEBATCH_SPOOL_DIR", str(tmp_path / "spool"))
    manifest = make_local_manifest(tmp_path, 5)
    output = tmp_path / "out"
    command = ("submit", str(manifest), "--output", str(output), "--address", ray_head.address, *SLOW)
    first = start_stylebatch(*command)
    deadline = time.monotonic() + 180
    while not outputs_of(output) and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    written = outputs_of(output)
    assert 1 <= len(written) < 5, "killed in the middle of the run"

    rerun = stylebatch(*command)
    assert rerun.returncode == 0, rerun.stderr
    assert_no_traceback(rerun.stdout, rerun.stderr)
    table = local_results(output / "_results")
    first_run = min(table["run_id"].to_pylist())
    runs = {run_id: table.filter(pa.compute.equal(table["run_id"], run_id))
            for run_id in set(table["run_id"].to_pylist())}
    assert len(runs) == 2
    killed, second = runs[first_run], runs[max(runs)]
    ok_rows = sorted(rows_by_status(killed).get("ok", []) + rows_by_status(second).get("ok", []))
    assert ok_rows == [1, 2, 3, 4, 5], "every row computed exactly once over the two runs"
    assert set(rows_by_status(killed).get("ok", [])) == {
        row["row"] for row in second.to_pylist() if row["status"] == "skipped"}, \
        "every row whose output the killed run wrote has its record, and the rerun skips exactly those"
    for row in second.to_pylist():
        if row["status"] == "skipped":
            assert row["error"] == f"output exists, finished in run {first_run}", row["error"]
    assert all(os.stat(path).st_mtime_ns == mtime for path, mtime in written.items()), "nothing was redone"
    records = {run.run_id: run for run in read_runs(Storage(), parse_location(str(output / "_results")))}
    assert records[first_run].outcome == "not finished" and records[max(runs)].outcome == "finished"
    assert records[max(runs)].rows == 5


def test_three_concurrent_submits_of_one_manifest_compute_each_row_once(tmp_path, ray_head):
    manifest = make_local_manifest(tmp_path, 4)
    output = tmp_path / "out"
    command = ("submit", str(manifest), "--output", str(output), "--address", ray_head.address, *TINY)
    runs = [start_stylebatch(*command) for _ in range(3)]
    finished = [run.communicate(timeout=600) for run in runs]
    for run, (stdout, stderr) in zip(runs, finished, strict=True):
        assert run.returncode == 0, stderr
        assert_no_traceback(stdout, stderr)
    assert any("another run is working on" in stderr for _, stderr in finished), "the later ones waited"
    table = local_results(output / "_results")
    assert sorted(row["row"] for row in table.to_pylist() if row["status"] == "ok") == [1, 2, 3, 4]
    assert table.num_rows == 12 and rows_by_status(table).keys() == {"ok", "skipped"}
    assert len(outputs_of(output)) == 4


def test_a_symlink_inside_the_output_folder_cannot_send_an_output_outside(tmp_path, ray_head):
    output, outside = tmp_path / "out", tmp_path / "outside"
    output.mkdir()
    outside.mkdir()
    (output / "link").symlink_to(outside)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"content,style,output\n{IMAGES}/content/cat_chelsea.png,{IMAGES}/style/texture_zebra.jpg,"
                        f"link/x.png\n{IMAGES}/content/cat_chelsea.png,{IMAGES}/style/texture_zebra.jpg,ok.png\n")
    for _ in range(2):
        done = stylebatch("submit", str(manifest), "--output", str(output), "--address", ray_head.address, *TINY)
        assert done.returncode == 1, done.stderr
        assert "invalid row 1, column output" in done.stderr and "outside" in done.stderr
    assert list(outside.iterdir()) == [], "nothing was written through the link"
    table = local_results(output / "_results")
    assert [row["status"] for row in table.sort_by("run_id").to_pylist() if row["row"] == 2] == ["ok", "skipped"]


@pytest.mark.parametrize("name, reason", [
    ("bad\x00name.png", "control character"),
    ("a" * 300 + ".png", "at most 255"),
])
def test_outputs_no_filesystem_can_hold_are_invalid_rows_before_any_compute(tmp_path, name, reason):
    table = pa.table({"content": [f"{IMAGES}/content/cat_chelsea.png"], "style": [f"{IMAGES}/style/texture_zebra.jpg"],
                      "output": [name]})
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(table, manifest)
    done = stylebatch("submit", str(manifest), "--output", str(tmp_path / "out"), "--strict", *TINY)
    assert done.returncode == 2, done.stderr
    assert "invalid row 1, column output" in done.stderr and reason in done.stderr
    assert "nothing was run" in done.stderr


def test_a_file_beside_a_folder_of_the_same_name_is_an_invalid_row(tmp_path):
    manifest = tmp_path / "manifest.csv"
    pair = f"{IMAGES}/content/cat_chelsea.png,{IMAGES}/style/texture_zebra.jpg"
    manifest.write_text(f"content,style,output\n{pair},a.png\n{pair},a.png/b.png\n")
    done = stylebatch("submit", str(manifest), "--output", str(tmp_path / "out"), "--strict", *TINY)
    assert done.returncode == 2
    assert "invalid row 2, column output" in done.stderr and "collides with the output of row 1" in done.stderr


def test_a_manifest_without_rows_starts_nothing_and_says_so(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("content,style\n")
    started = time.monotonic()
    done = stylebatch("submit", str(manifest), "--output", str(tmp_path / "out"), *TINY)
    assert done.returncode == 0, done.stderr
    assert "has no rows: nothing to do" in " ".join(done.stdout.split())
    assert "worker" not in done.stderr and not (tmp_path / "out").exists()
    assert time.monotonic() - started < 30, "no Ray cluster was started"


def test_results_location_that_cannot_be_a_folder_fails_before_any_compute(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    manifest = make_local_manifest(tmp_path, 2)
    done = stylebatch("submit", str(manifest), "--output", str(tmp_path / "out"), "--results",
                      str(blocker / "results"), *TINY)
    assert done.returncode == 2
    assert_no_traceback(done.stdout, done.stderr)
    message = " ".join(done.stderr.split())
    assert f"cannot write the results location: {blocker}/results" in message and "a file is in the way" in message
    assert outputs_of(tmp_path / "out") == {}


def test_a_read_only_results_folder_fails_before_any_compute_for_a_user_who_cannot_write_it(tmp_path):
    if os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists():
        pytest.skip("needs root to run the command as an unprivileged user (setpriv)")
    for folder in (tmp_path, *tmp_path.parents):
        if folder != Path("/"):
            folder.chmod(folder.stat().st_mode | 0o005)
    results = tmp_path / "results"
    results.mkdir(mode=0o555)
    output = tmp_path / "out"
    output.mkdir()
    output.chmod(0o777)
    manifest = make_local_manifest(tmp_path, 1)
    manifest.chmod(0o644)
    as_nobody = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    env = {**os.environ, "HOME": str(tmp_path), "STYLEBATCH_SPOOL_DIR": str(output / "spool")}
    done = subprocess.run([*as_nobody, *stylebatch_command("submit", str(manifest), "--output", str(output),
                                                            "--results", str(results), *TINY)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    message = " ".join(done.stderr.split())
    assert f"cannot write the results location: {results}" in message and "permission denied" in message
    assert outputs_of(output) == {}


def stylebatch_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", *args]


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB tmpfs, mounted for the test (root only) and unmounted after it."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()}): needs root in a machine "
                    "that allows mounts")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_results_disk_that_fills_up_stops_the_run_cleanly_and_the_next_run_delivers_every_record(
        tmp_path, ray_head, small_disk, monkeypatch):
    monkeypatch.setenv("STYLEBATCH_SPOOL_DIR", str(tmp_path / "spool"))
    results = small_disk / "results"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (512 * 1024 - 6 * 1024))  # room for the probe and the run record, not for a part
    manifest = make_local_manifest(tmp_path, 3)
    output = tmp_path / "out"
    command = ("submit", str(manifest), "--output", str(output), "--results", str(results),
               "--address", ray_head.address, *TINY)
    full = stylebatch(*command)
    assert full.returncode == 1, full.stderr
    assert_no_traceback(full.stdout, full.stderr)
    message = " ".join(full.stdout.split()).lower()
    assert "no space left on device" in message and "the next run on the same results location" in message
    assert len(outputs_of(output)) == 3, "every row was computed and written before the records could be"

    filler.unlink()
    rerun = stylebatch(*command)
    assert rerun.returncode == 0, rerun.stderr
    table = local_results(results)
    assert rows_by_status(table) == {"ok": [1, 2, 3], "skipped": [1, 2, 3]}, "the stopped run's records arrived"


def test_an_unreachable_s3_endpoint_is_one_line_and_exit_2(tmp_path):
    manifest = make_local_manifest(tmp_path, 1)
    done = stylebatch("submit", str(manifest), "--output", f"s3://bucket-{uuid.uuid4().hex[:8]}/out",
                      "--s3-endpoint", "http://127.0.0.1:9", "--retry-window", "1", *TINY,
                      env={**os.environ, "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEEXAMPLE12",
                           "AWS_SECRET_ACCESS_KEY": "x" * 40})
    assert done.returncode == 2, done.stderr
    assert_no_traceback(done.stdout, done.stderr)
    assert "cannot write the output location" in done.stderr and "127.0.0.1:9" in done.stderr
    assert "x" * 40 not in done.stderr


def test_an_s3_outage_in_the_middle_of_a_run_is_waited_out_and_every_row_ends_ok_once(tmp_path, ray_head,
                                                                                      crashable_s3):
    client = crashable_s3.server.client()
    bucket = crashable_s3.server.create_bucket("outage")
    for relative in ("content/cat_chelsea.png", "style/texture_zebra.jpg"):
        client.put_object(Bucket=bucket, Key=f"in/{relative}", Body=(IMAGES / relative).read_bytes())
    rows = "\n".join(f"in/content/cat_chelsea.png,in/style/texture_zebra.jpg,r{row}.png" for row in range(1, 9))
    client.put_object(Bucket=bucket, Key="manifest.csv", Body=f"content,style,output\n{rows}\n".encode())
    run = start_stylebatch("submit", f"s3://{bucket}/manifest.csv", "--output", f"s3://{bucket}/out",
                           "--s3-endpoint", crashable_s3.server.endpoint_url, "--address", ray_head.address,
                           "--retry-window", "90", "--size", "48", "--levels", "1", "--iters", "8")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        listed = client.list_objects_v2(Bucket=bucket, Prefix="out/r").get("Contents", [])
        if listed:
            break
        time.sleep(0.1)
    crashable_s3.outage(6).wait()
    stdout, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr
    assert_no_traceback(stdout, stderr)
    assert "8 ok, 0 skipped, 0 failed of 8 rows" in stdout
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=bucket, Prefix="out/").get("Contents", [])]
    assert sorted(key for key in keys if key.startswith("out/r")) == sorted(f"out/r{row}.png" for row in range(1, 9))
    results = [key for key in keys if key.startswith("out/_results/run-") and key.endswith(".parquet")]
    assert len(results) == 1
    import io

    table = pq.read_table(io.BytesIO(client.get_object(Bucket=bucket, Key=results[0])["Body"].read()))
    assert sorted(table["row"].to_pylist()) == list(range(1, 9)) and set(table["status"].to_pylist()) == {"ok"}


def test_a_run_with_nothing_to_compute_never_imports_torch_or_ray(tmp_path):
    """The driver of a million rows that are done or invalid stays small: no torch, no Ray cluster."""
    pair = f"{IMAGES}/content/cat_chelsea.png,{IMAGES}/style/texture_zebra.jpg"
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"content,style,output\n{pair},done.png\n{pair},bad.txt\n")
    output = tmp_path / "out"
    output.mkdir()
    (output / "done.png").write_bytes(b"made earlier")
    probe = ("import runpy, sys\n"
             "sys.argv = ['stylebatch', 'submit', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('pipeline', run_name='__main__')\n"
             "except SystemExit as done:\n    code = done.code\n"
             "print('modules', 'torch' in sys.modules, 'ray' in sys.modules, 'exit', code)\n")
    done = subprocess.run([sys.executable, "-c", probe, str(manifest), "--output", str(output)],
                          capture_output=True, text=True, timeout=120)
    assert "modules False False exit 1" in done.stdout, done.stdout + done.stderr
    table = local_results(output / "_results")
    assert [row["status"] for row in table.sort_by("row").to_pylist()] == ["skipped", "failed"]
