"""The results table: journaled records, hidden parts, streamed compaction, one dataset for every reader."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipeline.batch.results import (
    SCHEMA,
    ResultsWriter,
    compact,
    compacted_location,
    parquet_bytes,
    part_location,
    read_results,
    result_files,
    to_table,
)
from pipeline.batch.spool import Spool
from pipeline.storage.store import Storage, parse_location


def record(row: int, status: str = "ok", output: str | None = None) -> dict:
    now = datetime.now(UTC)
    return {"row": row, "content": f"/in/{row}.png", "style": "/in/s.png", "output": output or f"/out/{row}.png",
            "status": status, "loss_total": 1.5 * row, "started_at": now, "finished_at": now,
            "error": None if status == "ok" else "boom"}


@pytest.fixture
def folder(tmp_path):
    return parse_location(str(tmp_path / "results"))


@pytest.fixture
def spool_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEBATCH_SPOOL_DIR", str(tmp_path / "spool"))
    return tmp_path / "spool"


def visible(tmp_path) -> list[str]:
    return sorted(path.name for path in (tmp_path / "results").glob("*.parquet"))


def test_parts_are_written_while_running_hidden_from_readers_and_compacted_at_the_end(tmp_path, folder, spool_dir):
    writer = ResultsWriter(Storage(), folder, "a", flush_rows=2, flush_seconds=3600)
    for row in (1, 2, 3):
        writer.add(record(row))
    assert [p.name for p in (tmp_path / "results" / "_parts" / "run-a").iterdir()] == ["part-000001.parquet"]
    assert visible(tmp_path) == [], "pyarrow, DuckDB and Spark skip _parts: no half-run is read as a whole one"
    assert read_results(Storage(), folder).num_rows == 2, "stylebatch's own readers see a running run's parts"
    merged = writer.close()
    assert merged == compacted_location(folder, "a")
    assert visible(tmp_path) == ["run-a.parquet"] and not list((tmp_path / "results" / "_parts").rglob("*.parquet"))
    table = read_results(Storage(), folder)
    assert table.schema == SCHEMA and sorted(table["row"].to_pylist()) == [1, 2, 3]
    assert not (spool_dir / "run-a").exists() and not list(spool_dir.rglob("seg-*")), "a closed run leaves no journal"


def test_time_flushes_a_slow_run(folder, spool_dir):
    writer = ResultsWriter(Storage(), folder, "slow", flush_rows=1000, flush_seconds=0.0)
    writer.add(record(1))
    assert read_results(Storage(), folder).num_rows == 1


def test_compaction_streams_many_parts_and_a_crash_before_deleting_them_never_shows_a_row_twice(tmp_path, folder):
    storage = Storage()
    for number in range(1, 6):
        rows = [record(row) | {"run_id": "r"} for row in range(number * 10, number * 10 + 10)]
        storage.write_bytes(part_location(folder, "r", number), parquet_bytes(to_table(rows)))
    leftover = part_location(folder, "r", 1)
    compacted = compact(storage, folder, "r")
    assert compacted == compacted_location(folder, "r")
    assert pq.ParquetFile(compacted.path).metadata.num_row_groups == 5, "one row group per part, streamed"
    storage.write_bytes(leftover, parquet_bytes(to_table([record(10) | {"run_id": "r"}])))  # as if not deleted
    assert result_files(storage, folder) == [compacted]
    assert read_results(storage, folder).num_rows == 50
    assert ds.dataset(folder.path, format="parquet").count_rows() == 50
    compact(storage, folder, "r")
    assert storage.stat(leftover) is None, "the next compaction cleans the leftover up"


def test_the_folder_is_one_dataset_for_pyarrow_pandas_and_duckdb(tmp_path, folder, spool_dir):
    for run, rows in (("one", [1, 2]), ("two", [1])):
        writer = ResultsWriter(Storage(), folder, run)
        for row in rows:
            writer.add(record(row, "failed" if run == "two" else "ok"))
        writer.close()
    path = str(tmp_path / "results")
    assert ds.dataset(path, format="parquet").count_rows() == 3
    frame = pd.read_parquet(path)
    assert sorted(frame["run_id"]) == ["one", "one", "two"] and str(frame["started_at"].dt.tz) == "UTC"
    counts = duckdb.sql(f"select status, count(*) from read_parquet('{path}/*.parquet') "
                        "group by status order by status").fetchall()
    assert counts == [("failed", 1), ("ok", 2)]


def test_a_table_written_before_a_column_existed_reads_with_that_column_empty(tmp_path, folder):
    """Results folders outlive versions: a file without newer columns (search_step, worker_node) still
    reads beside a file that has them, and so do parts an older version left visible."""
    (tmp_path / "results").mkdir()
    older = to_table([record(1) | {"run_id": "old"}]).drop_columns(["search_step", "worker_node"])
    pq.write_table(older, tmp_path / "results" / "run-old.parquet")
    newer = to_table([record(2) | {"run_id": "new", "search_step": 2}])
    pq.write_table(newer, tmp_path / "results" / "run-new.parquet")
    legacy_part = to_table([record(3) | {"run_id": "legacy"}])
    pq.write_table(legacy_part, tmp_path / "results" / "run-legacy-part-000001.parquet")
    table = read_results(Storage(), folder).sort_by("row")
    assert table["search_step"].to_pylist() == [None, 2, None]
    assert table["run_id"].to_pylist() == ["old", "new", "legacy"]


def test_journal_segments_become_parts_and_rows_in_flight_are_carried_forward(tmp_path, folder, spool_dir):
    spool = Spool(spool_dir, "j")
    writer = ResultsWriter(Storage(), folder, "j", spool, flush_rows=10_000, flush_seconds=3600,
                           in_flight=lambda: [record(9) | {"run_id": "j"}])
    writer.add(record(1))
    writer.dispatched(record(9))
    writer.add(record(2))
    writer.flush()
    assert sorted(read_results(Storage(), folder)["row"].to_pylist()) == [1, 2], "dispatch lines are not results"
    assert not (spool.folder / "seg-000001.jsonl").exists(), "a delivered segment is deleted"
    assert '"_dispatched":true' in (spool.folder / "seg-000002.jsonl").read_text(), \
        "rows in flight are journaled again in the next segment"
    writer.close()
    assert pq.read_table(compacted_location(folder, "j").path).num_rows == 2


def test_shared_parameters_are_journaled_once_per_segment_and_restored_in_the_parts(tmp_path, folder, spool_dir):
    spool = Spool(spool_dir, "p")
    writer = ResultsWriter(Storage(), folder, "p", spool, flush_rows=10_000, flush_seconds=3600)
    for row in range(1, 7):
        writer.add(record(row) | {"params": '{"size": 64}' if row % 2 else '{"size": 128}'})
    writer.add(record(7), durable=True)  # no parameters at all (an invalid row); durable: on disk now
    journal = (spool.folder / "seg-000001.jsonl").read_text()
    assert journal.count('\\"size\\"') == 2, "each distinct value once"
    writer.close()
    table = read_results(Storage(), folder).sort_by("row")
    assert table["params"].to_pylist() == ['{"size": 64}', '{"size": 128}'] * 3 + [None]
