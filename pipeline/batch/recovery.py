"""Delivering what runs that ended badly left behind, before a new run starts on the same results.

A driver killed with `kill -9`, or stopped because the results location stayed down, leaves
its journal (`pipeline.batch.spool`) on local disk and perhaps parts in the results folder.
The next run on the same results location, on the same machine, writes each journal segment
as its part, rebuilds from their outputs' metadata the records of rows that were in flight
when the driver died (their outputs may exist though their results never reached it),
compacts the run's parts into its `run-<id>.parquet`, and marks its run record. Parts left
by a driver on another machine are compacted once that run's record is stale or ended.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.batch.records import recovered_record
from pipeline.batch.results import (
    PARTS_FOLDER,
    TIMESTAMP_FIELDS,
    compact,
    deliver_segment,
    parquet_bytes,
    part_location,
    to_table,
)
from pipeline.batch.runs import read_run, write_run
from pipeline.batch.spool import abandoned_runs, read_segment, spool_root
from pipeline.storage.store import Location, Storage, parse_location


def recover(storage: Storage, results: Location, current_run: str, on_status: Callable[[str], None]) -> None:
    """Deliver every abandoned journal of `results` on this machine, then compact orphaned parts."""
    for run_id, folder, lock in abandoned_runs(spool_root(results)):
        try:
            delivered, rebuilt = _deliver(storage, results, run_id, folder)
            _close_run(storage, results, run_id,
                       f"the driver stopped before closing the run; run {current_run} delivered "
                       f"{delivered} journaled record(s) and rebuilt {rebuilt} from their outputs")
            on_status(f"delivered {delivered + rebuilt} record(s) that run {run_id} had kept in its local journal")
        finally:
            lock.close()
        shutil.rmtree(folder, ignore_errors=True)
    for run_id in _runs_with_parts(storage, results):
        record = read_run(storage, results, run_id)
        if run_id != current_run and (record is None or record.state() != "running"):
            compact(storage, results, run_id)


def _deliver(storage: Storage, results: Location, run_id: str, folder: Path) -> tuple[int, int]:
    """Write a journal's segments as parts; returns (records delivered, records rebuilt)."""
    segments = sorted(folder.glob("seg-*.jsonl"))
    in_flight: dict[int, dict[str, Any]] = {}
    delivered = 0
    for segment in segments:
        for entry in read_segment(segment, TIMESTAMP_FIELDS):
            if entry.dispatched:
                in_flight[entry.record["row"]] = entry.record
            else:
                in_flight.pop(entry.record["row"], None)
                delivered += 1
        deliver_segment(storage, results, run_id, segment)
    rebuilt = rebuild_in_flight(storage, list(in_flight.values()))
    if rebuilt:
        number = len(segments) + 1 if not segments else int(segments[-1].stem.removeprefix("seg-")) + 1
        storage.write_bytes(part_location(results, run_id, number), parquet_bytes(to_table(rebuilt)))
    return delivered, len(rebuilt)


def rebuild_in_flight(storage: Storage, dispatched: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ok records of dispatched rows whose outputs exist, written by the same run for the same row."""
    if not dispatched:
        return []
    infos = storage.stat_many([parse_location(record["output"]) for record in dispatched])
    rebuilt = []
    for record, info in zip(dispatched, infos, strict=True):
        if info is not None:
            recovered = recovered_record(record, info.metadata)
            if recovered is not None:
                rebuilt.append(recovered)
    return rebuilt


def _close_run(storage: Storage, results: Location, run_id: str, note: str) -> None:
    """Compact a dead run's parts; a record still saying 'running' ends at its last heartbeat."""
    compact(storage, results, run_id)
    record = read_run(storage, results, run_id)
    if record is not None and record.outcome == "running":
        write_run(storage, results, replace(record, outcome="not finished", ended_at=record.heartbeat_at, note=note))


def _runs_with_parts(storage: Storage, results: Location) -> set[str]:
    prefix = str(results.child(PARTS_FOLDER)).rstrip("/") + "/run-"
    return {str(location)[len(prefix):].split("/")[0]
            for location in storage.list(results.child(PARTS_FOLDER), suffix=".parquet")}
