"""Run records: how many rows a run's manifest had, when it started and ended, and how it ended.

Each run keeps a small JSON file, `<results>/_runs/run-<id>.json` (the underscore hides it
from pyarrow, DuckDB and Spark, which read the Parquet files beside it). The driver writes it
when the run starts, refreshes `heartbeat_at` while it goes, and sets `outcome` at the end:
finished, interrupted (Ctrl-C) or stopped (storage stayed down; its records were kept). A
record still saying `running` whose heartbeat is older than STALE_AFTER belongs to a driver
that died: `status` calls it "not finished".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.storage.store import Location, Storage, StorageError

RUNS_FOLDER = "_runs"
HEARTBEAT_SECONDS = 60.0
STALE_AFTER = timedelta(minutes=10)
OUTCOMES = ("running", "finished", "interrupted", "stopped", "not finished")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RunRecord:
    """What a run was asked to do and how far it got."""

    run_id: str
    manifest: str
    output: str
    rows: int  # data rows in the manifest
    started_at: datetime
    heartbeat_at: datetime
    host: str
    stylebatch_version: str
    outcome: str = "running"
    ended_at: datetime | None = None
    counts: dict[str, int] = field(default_factory=dict)
    note: str = ""

    def state(self, now: datetime | None = None) -> str:
        """The outcome, with a running record whose driver stopped beating read as 'not finished'."""
        if self.outcome == "running" and (now or utc_now()) - self.heartbeat_at > STALE_AFTER:
            return "not finished"
        return self.outcome

    def beat(self, counts: dict[str, int]) -> RunRecord:
        return replace(self, heartbeat_at=utc_now(), counts=dict(counts))

    def ended(self, outcome: str, counts: dict[str, int], note: str = "") -> RunRecord:
        now = utc_now()
        return replace(self, outcome=outcome, ended_at=now, heartbeat_at=now, counts=dict(counts), note=note)

    def to_json(self) -> bytes:
        values = asdict(self)
        for name in ("started_at", "heartbeat_at", "ended_at"):
            values[name] = values[name].isoformat() if values[name] else None
        return json.dumps(values, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RunRecord:
        values: dict[str, Any] = json.loads(data)
        for name in ("started_at", "heartbeat_at", "ended_at"):
            values[name] = datetime.fromisoformat(values[name]) if values.get(name) else None
        known = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        return cls(**known)


def record_location(results: Location, run_id: str) -> Location:
    return results.child(f"{RUNS_FOLDER}/run-{run_id}.json")


def write_run(storage: Storage, results: Location, record: RunRecord) -> None:
    storage.write_bytes(record_location(results, record.run_id), record.to_json(), "application/json")


def read_run(storage: Storage, results: Location, run_id: str) -> RunRecord | None:
    try:
        return RunRecord.from_json(storage.read_bytes(record_location(results, run_id)))
    except StorageError:
        return None


def read_runs(storage: Storage, results: Location) -> Iterator[RunRecord]:
    """Every run record of a results location, by run id (oldest first); unreadable ones are skipped."""
    for location in storage.list(results.child(RUNS_FOLDER), suffix=".json"):
        try:
            yield RunRecord.from_json(storage.read_bytes(location))
        except (StorageError, ValueError, TypeError, KeyError):
            continue
