"""The results table: incremental Parquet parts, compaction, one dataset for pyarrow, pandas and DuckDB."""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipeline.batch.results import SCHEMA, ResultsWriter, finished_outputs, parquet_bytes, read_results, to_table
from pipeline.storage.store import Storage, parse_location


def record(row: int, status: str = "ok", output: str | None = None) -> dict:
    now = datetime.now(timezone.utc)
    return {"row": row, "content": f"/in/{row}.png", "style": "/in/s.png", "output": output or f"/out/{row}.png",
            "status": status, "loss_total": 1.5 * row, "started_at": now, "finished_at": now,
            "error": None if status == "ok" else "boom"}


@pytest.fixture
def folder(tmp_path):
    return parse_location(str(tmp_path / "results"))


def test_rows_are_flushed_as_parts_while_running_and_compacted_at_the_end(tmp_path, folder):
    writer = ResultsWriter(Storage(), folder, "run-a", flush_rows=2, flush_seconds=3600)
    for row in (1, 2, 3):
        writer.add(record(row))
    parts = sorted(path.name for path in (tmp_path / "results").iterdir())
    assert parts == ["run-run-a-part-000001.parquet"], "two rows make a part, the third waits"
    assert read_results(Storage(), folder).num_rows == 2, "a crash now would lose only the third row"
    merged = writer.close()
    assert merged is not None and merged.name == "run-run-a.parquet"
    assert sorted(path.name for path in (tmp_path / "results").iterdir()) == ["run-run-a.parquet"]
    table = read_results(Storage(), folder)
    assert table.schema == SCHEMA and sorted(table["row"].to_pylist()) == [1, 2, 3]


def test_time_flushes_a_slow_run(folder):
    writer = ResultsWriter(Storage(), folder, "slow", flush_rows=1000, flush_seconds=0.0)
    writer.add(record(1))
    assert read_results(Storage(), folder).num_rows == 1


def test_a_run_left_twice_by_a_crash_during_compaction_is_read_once(tmp_path, folder):
    storage = Storage()
    table = to_table([record(1) | {"run_id": "r"}, record(2) | {"run_id": "r"}])
    storage.write_bytes(folder.child("run-r.parquet"), parquet_bytes(table))
    storage.write_bytes(folder.child("run-r-part-000001.parquet"), parquet_bytes(table.slice(0, 1)))
    assert sorted(read_results(storage, folder)["row"].to_pylist()) == [1, 2]


def test_the_folder_is_one_dataset_for_pyarrow_pandas_and_duckdb(tmp_path, folder):
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


def test_finished_outputs_are_the_ok_rows_of_any_run(folder):
    writer = ResultsWriter(Storage(), folder, "r1")
    writer.add(record(1, "ok", "/out/a.png"))
    writer.add(record(2, "failed", "/out/b.png"))
    writer.close()
    assert finished_outputs(Storage(), folder) == {"/out/a.png": "r1"}
    assert finished_outputs(Storage(), parse_location("/nonexistent/results")) == {}


def test_a_table_written_before_a_column_existed_reads_with_that_column_empty(tmp_path, folder):
    """Results folders outlive versions: a file without a newer column (search_step) still reads,
    beside a file that has it, and a rerun still finds the rows it finished."""
    import pyarrow.parquet as pq

    (tmp_path / "results").mkdir()
    older = to_table([record(1) | {"run_id": "old"}]).drop_columns(["search_step"])
    pq.write_table(older, tmp_path / "results" / "run-old.parquet")
    newer = to_table([record(2) | {"run_id": "new", "search_step": 2}])
    pq.write_table(newer, tmp_path / "results" / "run-new.parquet")
    table = read_results(Storage(), folder).sort_by("row")
    assert table["search_step"].to_pylist() == [None, 2]
    assert finished_outputs(Storage(), folder) == {"/out/1.png": "old", "/out/2.png": "new"}
