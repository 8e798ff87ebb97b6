"""The driver's local journal of results, so that no record is lost to a killed driver or to a
results location that is down.

Every record the driver receives is appended to a JSON-lines segment file on local disk at
once (a worker's result is handed to the operating system before the next one is waited for,
so even `kill -9` of the driver loses none); the rows sent to workers are journaled as well,
so that the rows in flight when the driver died can be found. A segment becomes results part
n once part n is safely written, and is then deleted; writing part n again from segment n
gives the same part, so delivering a segment twice is harmless. A live driver holds an
exclusive `flock` on its run's spool folder: a folder nobody holds belongs to a run that
ended without delivering everything, and the next run on the same results location delivers
it (`pipeline.batch.recovery`).

Layout: <spool root>/<digest of the results location>/run-<id>/seg-<n>.jsonl, with the root
$STYLEBATCH_SPOOL_DIR, else the user's cache folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import platformdirs

from pipeline.storage.store import Location

BUFFERED_SECONDS = 0.5


def spool_root(results: Location) -> Path:
    """The spool folder of one results location on this machine."""
    base = os.environ.get("STYLEBATCH_SPOOL_DIR") or os.path.join(platformdirs.user_cache_dir("stylebatch"), "spool")
    return Path(base) / hashlib.sha256(str(results).encode()).hexdigest()[:16]


DISPATCHED = "_dispatched"  # marks a journal line that records a row sent to a worker, not a result
# The "params" column (every parameter as JSON, ~600 bytes) is the same for rows that share their
# parameters: a segment writes each distinct value once, on a line {PARAMS_DEFINITION: n, "params": ...},
# and records carry "@n" instead. Half of a record's bytes, and of the time spent journaling it.
PARAMS_DEFINITION = "_params_definition"
PARAMS_REFERENCE = "@"


@dataclass(frozen=True)
class Entry:
    """One journal line: a result record, or a row sent to a worker (`dispatched`)."""

    record: dict[str, Any]
    dispatched: bool = False


class Spool:
    """The journal of one live run; holds the run folder's lock until `close`."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.folder = root / f"run-{run_id}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.folder / "lock", "a")  # noqa: SIM115 - held for the run's lifetime
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.segment = 1
        self._file: IO[str] = self._open(self.segment)
        self._params: dict[str, str] = {}  # params JSON -> its reference in the current segment
        self._last_flush = time.monotonic()

    def _open(self, segment: int) -> IO[str]:
        return open(self.folder / f"seg-{segment:06d}.jsonl", "a", encoding="utf-8")

    def append(self, entry: Entry, durable: bool = False) -> None:
        """Journal `entry`; `durable` hands it to the OS now (else within BUFFERED_SECONDS)."""
        record = entry.record
        params = record.get("params")
        if params is not None:
            reference = self._params.get(params)
            if reference is None:
                reference = self._params[params] = f"{PARAMS_REFERENCE}{len(self._params)}"
                self._file.write(json.dumps({PARAMS_DEFINITION: reference, "params": params}) + "\n")
            record["params"] = reference  # for this line only: put back below, so the record is unchanged
        try:
            self._file.write(encode(entry) + "\n")
        finally:
            if params is not None:
                record["params"] = params
        if durable or time.monotonic() - self._last_flush >= BUFFERED_SECONDS:
            self._file.flush()
            self._last_flush = time.monotonic()

    def rotate(self, in_flight: list[dict[str, Any]]) -> Path:
        """Close the current segment (returned, to become a part) and start the next one, which
        first journals the rows still in flight so that the journal never forgets them."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        closed = self.folder / f"seg-{self.segment:06d}.jsonl"
        self.segment += 1
        self._file = self._open(self.segment)
        self._params = {}
        for record in in_flight:
            self.append(Entry(record, dispatched=True))
        self._file.flush()
        return closed

    def close(self, delete: bool) -> None:
        """Stop journaling; `delete` removes the folder (everything was delivered)."""
        self._file.close()
        if delete:
            shutil.rmtree(self.folder, ignore_errors=True)
        self._lock.close()


def encode(entry: Entry) -> str:
    """A journal line: the record as JSON (datetimes as ISO strings), marked if it is a dispatch."""
    record = {**entry.record, DISPATCHED: True} if entry.dispatched else entry.record
    return json.dumps(record, default=_json_default, separators=(",", ":"))


def read_segment(path: Path, timestamp_fields: frozenset[str]) -> Iterator[Entry]:
    """The entries of a segment, datetimes restored; a torn last line (the driver died writing it)
    is ignored."""
    definitions: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                continue
            record = json.loads(line)
            if PARAMS_DEFINITION in record:
                definitions[record[PARAMS_DEFINITION]] = record["params"]
                continue
            if record.get("params") in definitions:
                record["params"] = definitions[record["params"]]
            dispatched = bool(record.pop(DISPATCHED, False))
            for name in timestamp_fields & record.keys():
                if record[name] is not None:
                    record[name] = datetime.fromisoformat(record[name])
            yield Entry(record, dispatched)


def drop_torn_line(path: Path) -> None:
    """Cut a segment back to its last complete line (a killed driver may have left half of one)."""
    with open(path, "rb+") as handle:
        end = handle.seek(0, os.SEEK_END)
        if end == 0:
            return
        handle.seek(end - 1)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        handle.truncate(handle.read().rfind(b"\n") + 1)  # rare: the whole segment is read once


def _json_default(value: Any, _last: list[Any] = [None, ""]) -> Any:  # noqa: B006 - the memo, on purpose
    """Datetimes as ISO strings; the last one is memoised, as the rows of one chunk share their time."""
    if isinstance(value, datetime):
        if value is not _last[0]:
            _last[0], _last[1] = value, value.isoformat()
        return _last[1]
    raise TypeError(f"cannot journal {type(value).__name__}")


def abandoned_runs(root: Path) -> Iterator[tuple[str, Path, IO[str]]]:
    """(run id, folder, held lock) of every spooled run whose driver is gone, locked for delivery.

    The caller closes the lock file when done with the folder.
    """
    if not root.is_dir():
        return
    for folder in sorted(root.glob("run-*")):
        lock = open(folder / "lock", "a")  # noqa: SIM115 - closed by the caller or below
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        yield folder.name.removeprefix("run-"), folder, lock
