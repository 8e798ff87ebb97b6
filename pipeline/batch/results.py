"""The results table: one Parquet row per manifest row per run, written incrementally.

A results location is a folder (or S3 prefix) of Parquet files with one schema, readable
as one dataset by pyarrow, pandas and DuckDB. While a run goes on, finished rows are
flushed every few seconds as `run-<id>-part-<n>.parquet`; at a clean end the parts are
compacted into `run-<id>.parquet`. A crash loses at most the rows not yet flushed.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.storage.store import Location, Storage

SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("row", pa.int64()),
    ("content", pa.string()),
    ("style", pa.string()),
    ("output", pa.string()),
    ("alpha_global", pa.float64()),
    ("alpha_local", pa.float64()),
    ("alpha_content", pa.float64()),
    ("tv_weight", pa.float64()),
    ("size", pa.int64()),
    ("levels", pa.int64()),
    ("iters", pa.int64()),
    ("seed", pa.int64()),
    ("match_every", pa.int64()),
    ("search_dim", pa.int64()),
    ("search_candidates", pa.int64()),
    ("search_step", pa.int64()),  # null in tables written before it existed
    ("weights", pa.string()),
    ("params", pa.string()),  # every synthesis parameter as JSON, defaults included
    ("status", pa.string()),  # ok / skipped / failed
    ("error", pa.string()),
    ("loss_global", pa.float64()),
    ("loss_local", pa.float64()),
    ("loss_content", pa.float64()),
    ("loss_total", pa.float64()),
    ("evaluations", pa.int64()),
    ("load_seconds", pa.float64()),
    ("synthesis_seconds", pa.float64()),
    ("write_seconds", pa.float64()),
    ("worker_host", pa.string()),
    ("worker_node", pa.string()),  # the Ray node id of the worker; null for rows no worker ran
    ("device", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("finished_at", pa.timestamp("us", tz="UTC")),
    ("stylebatch_version", pa.string()),
])
STATUSES = ("ok", "skipped", "failed")


def to_table(records: Iterable[dict[str, Any]]) -> pa.Table:
    """Records (dicts with any subset of the schema's columns) -> a table with the full schema."""
    records = list(records)
    return pa.table({field.name: pa.array([record.get(field.name) for record in records], type=field.type)
                     for field in SCHEMA}, schema=SCHEMA)


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


class ResultsWriter:
    """Buffers result records and flushes them as Parquet part files of one run."""

    def __init__(self, storage: Storage, folder: Location, run_id: str, *,
                 flush_rows: int = 100, flush_seconds: float = 10.0) -> None:
        self.storage, self.folder, self.run_id = storage, folder, run_id
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self._buffer: list[dict[str, Any]] = []
        self._parts: list[Location] = []
        self._last_flush = time.monotonic()

    def add(self, record: dict[str, Any]) -> None:
        """Queue one row's result; flushes when enough rows or time have accumulated."""
        self._buffer.append({**record, "run_id": self.run_id})
        if len(self._buffer) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as a new part file (atomically)."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        part = self.folder.child(f"run-{self.run_id}-part-{len(self._parts) + 1:06d}.parquet")
        self.storage.write_bytes(part, parquet_bytes(to_table(self._buffer)))
        self._parts.append(part)
        self._buffer.clear()

    def close(self) -> Location | None:
        """Flush, then merge this run's parts into one file and delete them; returns the file."""
        self.flush()
        if not self._parts:
            return None
        tables = [pq.read_table(io.BytesIO(self.storage.read_bytes(part))) for part in self._parts]
        merged = self.folder.child(f"run-{self.run_id}.parquet")
        self.storage.write_bytes(merged, parquet_bytes(pa.concat_tables(tables)))
        for part in self._parts:
            self.storage.delete(part)
        self._parts.clear()
        return merged


def iter_result_files(storage: Storage, folder: Location) -> Iterator[Location]:
    """Every Parquet file of a results folder, in name order."""
    return storage.list(folder, suffix=".parquet")


def read_results(storage: Storage, folder: Location, columns: list[str] | None = None) -> pa.Table:
    """All runs' rows of a results folder (empty table if there are none), duplicates removed.

    A crash between compaction and deleting the parts can leave a run's rows twice;
    (run_id, row) identifies a row, so only its first copy is kept.
    """
    wanted = columns if columns is None else list(dict.fromkeys(["run_id", "row", *columns]))
    tables = [pq.read_table(io.BytesIO(storage.read_bytes(location)), columns=wanted, schema=SCHEMA)
              for location in iter_result_files(storage, folder)]
    if not tables:
        return SCHEMA.empty_table() if wanted is None else SCHEMA.empty_table().select(wanted)
    table = pa.concat_tables(tables)
    seen: set[tuple[str, int]] = set()
    keep = []
    for key in zip(table["run_id"].to_pylist(), table["row"].to_pylist()):
        keep.append(key not in seen)
        seen.add(key)
    return table if all(keep) else table.filter(pa.array(keep))


def finished_outputs(storage: Storage, folder: Location) -> dict[str, str]:
    """{output: run_id} of every row recorded ok in any run."""
    table = read_results(storage, folder, ["output", "status"])
    ok = table.filter(pc.equal(table["status"], "ok"))
    return dict(zip(ok["output"].to_pylist(), ok["run_id"].to_pylist()))
