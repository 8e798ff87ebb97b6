"""The results table: one Parquet row per manifest row per run, journaled, written in parts, compacted.

A results location is a folder (or S3 prefix) whose visible Parquet files, `run-<id>.parquet`,
one per run, share one schema and read as one dataset in pyarrow, pandas, DuckDB and Spark.
While a run goes on, its records are journaled locally (`pipeline.batch.spool`) and written
every `flush_rows` rows or `flush_seconds` seconds as `_parts/run-<id>/part-<n>.parquet`;
at the end the parts are streamed, row group by row group, into `run-<id>.parquet` and then
deleted. The underscore keeps the parts out of those readers' datasets, so a crash between
writing the compacted file and deleting the parts never shows a row twice: readers here
take a run's compacted file when it exists and its parts otherwise, and the next run on the
location cleans up.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from pipeline.batch.columns import PARAMETER_COLUMNS
from pipeline.batch.spool import DISPATCHED, PARAMS_DEFINITION, Entry, Spool, drop_torn_line, spool_root
from pipeline.storage.store import Location, Storage

SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("row", pa.int64()),
    ("content", pa.string()),
    ("style", pa.string()),
    ("output", pa.string()),
    *((column.name, column.arrow_type) for column in PARAMETER_COLUMNS),
    ("weights", pa.string()),
    ("params", pa.string()),  # every synthesis parameter as JSON, defaults included
    ("status", pa.string()),  # ok / skipped / failed
    ("error", pa.string()),
    ("loss_global", pa.float64()),
    ("loss_local", pa.float64()),
    ("loss_content", pa.float64()),
    ("loss_total", pa.float64()),
    ("evaluations", pa.int64()),
    ("worse_than_start", pa.bool_()),  # the returned image's loss is above its finest level's start
    ("rejected_steps", pa.int64()),  # L-BFGS steps rejected for raising the loss: how rough the run was
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
TIMESTAMP_FIELDS = frozenset(field.name for field in SCHEMA if pa.types.is_timestamp(field.type))
STATUSES = ("ok", "skipped", "failed")
PARTS_FOLDER = "_parts"
BATCH_ROWS = 4096
_COMPACTED = re.compile(r"^run-(.+)\.parquet$")
_LEGACY_PART = re.compile(r"^run-(.+)-part-\d{6}\.parquet$")  # parts of versions that kept them visible
_SEGMENT_PARSING = pa_json.ParseOptions(
    explicit_schema=SCHEMA.append(pa.field(DISPATCHED, pa.bool_())).append(pa.field(PARAMS_DEFINITION, pa.string())),
    unexpected_field_behavior="ignore")
_SEGMENT_READING = pa_json.ReadOptions(block_size=1 << 22)


def to_table(records: Iterable[dict[str, Any]]) -> pa.Table:
    """Records (dicts with any subset of the schema's columns) -> a table with the full schema."""
    records = list(records)
    return pa.table({field.name: pa.array([record.get(field.name) for record in records], type=field.type)
                     for field in SCHEMA}, schema=SCHEMA)


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def compacted_location(folder: Location, run_id: str) -> Location:
    return folder.child(f"run-{run_id}.parquet")


def part_location(folder: Location, run_id: str, number: int) -> Location:
    return folder.child(f"{PARTS_FOLDER}/run-{run_id}/part-{number:06d}.parquet")


class ResultsWriter:
    """Journals a run's records locally and writes them to the results location in parts.

    `in_flight()` returns the records of the rows sent to workers and not yet back: they are
    carried into each new journal segment (see `Spool.rotate`).
    """

    def __init__(self, storage: Storage, folder: Location, run_id: str, spool: Spool | None = None, *,
                 flush_rows: int = 20_000, flush_seconds: float = 60.0,
                 in_flight: Callable[[], list[dict[str, Any]]] = list) -> None:
        self.storage, self.folder, self.run_id = storage, folder, run_id
        self.spool = spool or Spool(spool_root(folder), run_id)
        self.flush_rows, self.flush_seconds, self.in_flight = flush_rows, flush_seconds, in_flight
        self.parts: list[Location] = []
        self._pending = 0
        self._last_flush = time.monotonic()

    def add(self, record: dict[str, Any], durable: bool = False) -> None:
        """Journal one row's result, given this run's id (`durable`: hand it to the OS now); flush a
        part when due.

        Raises StorageError if a due part cannot be written: the records stay journaled.
        """
        record["run_id"] = self.run_id
        self.spool.append(Entry(record), durable)
        self._pending += 1
        if self.due():
            self.flush()

    def dispatched(self, record: dict[str, Any]) -> None:
        """Journal that a row was sent to a worker (its output may exist before its result arrives)."""
        self.spool.append(Entry({**record, "run_id": self.run_id}, dispatched=True), durable=True)

    def due(self) -> bool:
        return self._pending > 0 and (self._pending >= self.flush_rows
                                      or time.monotonic() - self._last_flush >= self.flush_seconds)

    def flush(self) -> None:
        """Write the journaled rows as the next part; StorageError leaves them journaled."""
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        segment = self.spool.rotate(self.in_flight())
        self._pending = 0
        self.parts.append(deliver_segment(self.storage, self.folder, self.run_id, segment))
        segment.unlink()

    def close(self) -> Location | None:
        """Flush and compact this run's parts into `run-<id>.parquet`; returns it (None if no rows).

        On StorageError the journal and the parts written so far are kept for the next run.
        """
        self.flush()
        merged = compact(self.storage, self.folder, self.run_id)
        self.spool.close(delete=True)
        return merged


def deliver_segment(storage: Storage, folder: Location, run_id: str, segment: Path) -> Location:
    """Write the result records of a journal segment as the part of the same number (idempotent).

    pyarrow's JSON reader parses the segment against the schema (a dict per record and
    `to_table` would cost several times more per row in Python).
    """
    number = int(segment.stem.removeprefix("seg-"))
    drop_torn_line(segment)
    if segment.stat().st_size:
        table = pa_json.read_json(segment, parse_options=_SEGMENT_PARSING, read_options=_SEGMENT_READING)
        table = _with_params_defined(table)
        results = pc.and_(pc.is_null(table[DISPATCHED]), pc.is_null(table[PARAMS_DEFINITION]))
        table = table.filter(results).drop_columns([DISPATCHED, PARAMS_DEFINITION])
    else:
        table = SCHEMA.empty_table()
    location = part_location(folder, run_id, number)
    storage.write_bytes(location, parquet_bytes(table))
    return location


def _with_params_defined(table: pa.Table) -> pa.Table:
    """The journal's "params" references ("@n") replaced by the values their definition lines give."""
    definitions = table.filter(pc.is_valid(table[PARAMS_DEFINITION]))
    position = pc.index_in(table["params"], value_set=definitions[PARAMS_DEFINITION])
    defined = pc.take(definitions["params"], position)
    params = pc.if_else(pc.is_valid(position), defined, table["params"])
    return table.set_column(table.schema.get_field_index("params"), "params", params)


def run_parts(storage: Storage, folder: Location, run_id: str) -> list[Location]:
    return sorted(storage.list(folder.child(f"{PARTS_FOLDER}/run-{run_id}"), suffix=".parquet"), key=str)


def compact(storage: Storage, folder: Location, run_id: str) -> Location | None:
    """Stream a run's parts into `run-<id>.parquet` (one row group in memory at a time), then delete
    the parts. A run that already has a compacted file only loses its leftover parts."""
    parts = run_parts(storage, folder, run_id)
    merged = compacted_location(folder, run_id)
    if not parts:
        return merged if storage.stat(merged) is not None else None
    if storage.stat(merged) is None:
        handle, temporary = tempfile.mkstemp(prefix="stylebatch-results-", suffix=".parquet")
        os.close(handle)
        try:
            with pq.ParquetWriter(temporary, SCHEMA, compression="zstd") as writer:
                for part in parts:
                    part_file = pq.ParquetFile(io.BytesIO(storage.read_bytes(part)))
                    for group in range(part_file.num_row_groups):
                        writer.write_table(_conform(part_file.read_row_group(group)))
            storage.upload_file(Path(temporary), merged)
        finally:
            os.unlink(temporary)
    for part in parts:
        storage.delete(part)
    return merged


def _conform(table: pa.Table) -> pa.Table:
    """`table` with every column of SCHEMA, in order (missing ones null: older versions' files)."""
    columns = [table[field.name] if field.name in table.column_names else pa.nulls(table.num_rows, field.type)
               for field in SCHEMA]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def result_files(storage: Storage, folder: Location) -> list[Location]:
    """The Parquet files holding each run's rows once: its compacted file, else its parts."""
    compacted: dict[str, Location] = {}
    parts: dict[str, list[Location]] = {}
    for location in storage.list(folder, suffix=".parquet"):
        relative = str(location)[len(str(folder)):].lstrip("/")
        if relative.startswith(f"{PARTS_FOLDER}/run-"):
            parts.setdefault(relative.split("/")[1].removeprefix("run-"), []).append(location)
        elif "/" not in relative and (legacy := _LEGACY_PART.match(relative)):
            parts.setdefault(legacy.group(1), []).append(location)
        elif "/" not in relative and (match := _COMPACTED.match(relative)):
            compacted[match.group(1)] = location
    files: list[Location] = []
    for run_id in sorted(compacted.keys() | parts.keys()):
        files.extend([compacted[run_id]] if run_id in compacted else sorted(parts[run_id], key=str))
    return files


def iter_results(storage: Storage, folder: Location, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Every run's rows as record batches of at most BATCH_ROWS, one file in memory at a time."""
    for location in result_files(storage, folder):
        table_file = pq.ParquetFile(storage.open_reader(location))
        for batch in table_file.iter_batches(batch_size=BATCH_ROWS):
            table = _conform(pa.Table.from_batches([batch]))
            yield from (table.select(columns) if columns else table).to_batches()


def read_results(storage: Storage, folder: Location, columns: list[str] | None = None) -> pa.Table:
    """All runs' rows of a results folder as one table (empty if there are none)."""
    wanted = None if columns is None else list(dict.fromkeys(["run_id", "row", *columns]))
    batches = list(iter_results(storage, folder, wanted))
    schema = SCHEMA if wanted is None else pa.schema([SCHEMA.field(name) for name in wanted])
    return pa.Table.from_batches(batches, schema=schema)
