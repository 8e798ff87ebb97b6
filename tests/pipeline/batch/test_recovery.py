"""A driver killed with SIGKILL loses no record: the next run delivers its journal and rebuilds the records
of rows whose outputs were written after the driver last heard of them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest

from pipeline.batch.recovery import recover
from pipeline.batch.results import compacted_location, read_results
from pipeline.batch.runs import RunRecord, read_run, utc_now, write_run
from pipeline.storage.store import Storage, parse_location

DEAD_DRIVER = textwrap.dedent("""
    import os, signal, sys
    from datetime import datetime, timezone
    from pipeline.batch.records import output_metadata
    from pipeline.batch.results import ResultsWriter
    from pipeline.storage.store import Storage, parse_location

    results, outputs = parse_location(sys.argv[1]), parse_location(sys.argv[2])
    storage = Storage()
    def record(row, **more):
        return {"row": row, "content": "/in/c.png", "style": "/in/s.png", "output": str(outputs.child(f"{row}.png")),
                "alpha_local": 1e-4, "size": 32, **more}
    writer = ResultsWriter(storage, results, "dead", flush_rows=2, flush_seconds=3600)
    now = datetime.now(timezone.utc)
    for row in (1, 2, 3):                 # rows 1-2 become a part, row 3 stays journaled only
        writer.dispatched(record(row))
        writer.add(record(row, status="ok", loss_total=float(row), started_at=now, finished_at=now), durable=True)
    for row in (4, 5):                    # in flight when the driver dies
        writer.dispatched(record(row) | {"run_id": "dead"})
    finished = record(4, loss_total=4.0, evaluations=12, started_at=now, worker_host="w1") | {"run_id": "dead"}
    storage.write_bytes(outputs.child("4.png"), b"png", metadata=output_metadata("dead", finished))
    os.kill(os.getpid(), signal.SIGKILL)  # row 4's output exists, its result never arrived; row 5 never finished
""")


@pytest.fixture
def spool_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEBATCH_SPOOL_DIR", str(tmp_path / "spool"))
    return tmp_path / "spool"


def test_the_next_run_delivers_a_killed_drivers_journal_and_rebuilds_rows_in_flight(tmp_path, spool_dir):
    results, outputs = parse_location(str(tmp_path / "results")), parse_location(str(tmp_path / "out"))
    storage = Storage()
    write_run(storage, results, RunRecord("dead", "/m.csv", str(outputs), 5, utc_now(), utc_now(), "h", "0"))
    killed = subprocess.run([sys.executable, "-c", DEAD_DRIVER, str(results), str(outputs)], capture_output=True,
                            text=True, env={"STYLEBATCH_SPOOL_DIR": str(spool_dir), "PATH": "/usr/bin"})
    assert killed.returncode == -9, killed.stderr
    assert sorted(read_results(storage, results)["row"].to_pylist()) == [1, 2], "only the first part was written"

    messages: list[str] = []
    recover(storage, results, "next", messages.append)
    table = pq.read_table(compacted_location(results, "dead").path).sort_by("row")
    assert table["row"].to_pylist() == [1, 2, 3, 4], "row 5 never finished, so it has no record"
    row4 = table.to_pylist()[3]
    assert (row4["status"], row4["loss_total"], row4["evaluations"], row4["worker_host"]) == ("ok", 4.0, 12, "w1")
    assert row4["alpha_local"] == 1e-4 and row4["content"] == "/in/c.png", "the job's columns come from the journal"
    assert not list(spool_dir.rglob("seg-*")), "the journal is gone once delivered"
    run = read_run(storage, results, "dead")
    assert run is not None and run.outcome == "not finished" and "delivered" in run.note
    assert any("run dead" in message for message in messages)

    recover(storage, results, "later", messages.append)
    assert read_results(storage, results).num_rows == 4, "delivering twice adds nothing"


def test_a_live_drivers_journal_is_left_alone(tmp_path, spool_dir):
    from pipeline.batch.results import ResultsWriter

    results = parse_location(str(tmp_path / "results"))
    live = ResultsWriter(Storage(), results, "live", flush_rows=100, flush_seconds=3600)
    live.add({"row": 1, "status": "ok"})
    recover(Storage(), results, "other", lambda message: None)
    assert read_results(Storage(), results).num_rows == 0, "its lock says the driver is alive"
    live.close()
    assert read_results(Storage(), results).num_rows == 1
