"""Outputs that collide, found in bounded memory: a row whose output repeats an earlier row's, or
that would need to be a folder where another row writes a file (`a.png` and `a.png/b.png`).

Holding every output name of a 10^8-row manifest would take gigabytes, so each output (and
each folder above it, up to the output prefix) becomes a 16-byte BLAKE2b digest that is
spilled, with its row and kind, to one of `BUCKETS` files on local disk. Once every row is in,
each bucket is sorted on its own (memory: one bucket), collisions become flags in files
sorted by row, and the flags are read back in row order, merged lazily across buckets. A
128-bit digest makes a false collision vanishingly unlikely (~1e-22 for 10^8 names). Disk:
25 bytes per name; about 2.5 GB for 10^8 rows without folders.
"""

from __future__ import annotations

import hashlib
import heapq
import shutil
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUCKETS = 256
FLUSH_ENTRIES = 1 << 12  # per bucket: at most 256 x 4096 x 25 bytes (26 MB) wait in memory
FILE, FOLDER = 0, 1
_ENTRY = np.dtype([("h0", "<u8"), ("h1", "<u8"), ("row", "<i8"), ("kind", "u1")])
_FLAG = np.dtype([("row", "<i8"), ("other", "<i8"), ("code", "u1")])
DUPLICATE, CONFLICT = 0, 1


@dataclass(frozen=True)
class Collision:
    """Why a row's output cannot be written: it is `other_row`'s output too, or one would be a
    folder of the other."""

    row: int
    other_row: int
    duplicate: bool

    def reason(self, output: str) -> str:
        if self.duplicate:
            return f"{output} is already the output of row {self.other_row}"
        return (f"{output} collides with the output of row {self.other_row}: one would have to be a "
                "folder holding the other")


class OutputIndex:
    """Collects every row's output, then yields the rows whose output collides, in row order.

    Use as a context manager (its spill folder is removed on exit): `add` every valid row, in
    increasing row order, then read `collisions()` once.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="stylebatch-outputs-", dir=folder))
        self._digests = [bytearray() for _ in range(BUCKETS)]
        self._rows = [array("q") for _ in range(BUCKETS)]
        self._kinds = [bytearray() for _ in range(BUCKETS)]
        self.count = 0
        self._flag_files: list[Path] | None = None

    def __enter__(self) -> OutputIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def add(self, row: int, output: str, folders: Iterable[str] = ()) -> None:
        """Row `row` writes the file `output`, inside `folders` (those below the output prefix)."""
        self._add(row, output, FILE)
        for folder in folders:
            self._add(row, folder, FOLDER)

    def _add(self, row: int, name: str, kind: int) -> None:
        digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        bucket = digest[0]
        self._digests[bucket] += digest
        self._rows[bucket].append(row)
        self._kinds[bucket].append(kind)
        self.count += 1
        if len(self._rows[bucket]) >= FLUSH_ENTRIES:
            self._flush(bucket)

    def _flush(self, bucket: int) -> None:
        rows = self._rows[bucket]
        if not rows:
            return
        entries = np.empty(len(rows), _ENTRY)
        hashes = np.frombuffer(bytes(self._digests[bucket]), dtype="<u8").reshape(-1, 2)
        entries["h0"], entries["h1"] = hashes[:, 0], hashes[:, 1]
        entries["row"] = np.frombuffer(rows, dtype="<i8")
        entries["kind"] = np.frombuffer(bytes(self._kinds[bucket]), dtype="u1")
        with open(self.folder / f"bucket-{bucket:03d}", "ab") as handle:
            entries.tofile(handle)
        self._digests[bucket], self._rows[bucket], self._kinds[bucket] = bytearray(), array("q"), bytearray()

    def collisions(self) -> CollisionStream:
        """Every colliding row once (the first reason found), in row order; each call reads afresh.

        The first call sorts the buckets; `add` must not be called after it.
        """
        if self._flag_files is None:
            self._flag_files = []
            for bucket in range(BUCKETS):
                self._flush(bucket)
                path = self.folder / f"bucket-{bucket:03d}"
                if path.exists():
                    flags = _bucket_flags(np.fromfile(path, dtype=_ENTRY))
                    path.unlink()
                    if len(flags):
                        flag_path = self.folder / f"flags-{bucket:03d}"
                        flags.tofile(flag_path)
                        self._flag_files.append(flag_path)
        return CollisionStream(self._flag_files)


def _bucket_flags(entries: np.ndarray) -> np.ndarray:
    """Flags of one bucket, sorted by row: later rows whose name repeats an earlier row's as a file
    (duplicate) or whose name is a file where the earlier row has a folder, or the reverse (conflict)."""
    order = np.lexsort((entries["row"], entries["h1"], entries["h0"]))
    entries = entries[order]
    same = (entries["h0"][1:] == entries["h0"][:-1]) & (entries["h1"][1:] == entries["h1"][:-1])
    group_start = np.concatenate(([0], np.flatnonzero(~same) + 1))
    first = np.repeat(group_start, np.diff(np.append(group_start, len(entries))))
    first_kind, kind = entries["kind"][first], entries["kind"]
    later = np.arange(len(entries)) != first
    duplicate = later & (kind == FILE) & (first_kind == FILE)
    conflict = later & (kind != first_kind)
    flagged = duplicate | conflict
    flagged &= entries["row"] != entries["row"][first]  # a row never collides with itself
    flags = np.empty(int(flagged.sum()), _FLAG)
    flags["row"] = entries["row"][flagged]
    flags["other"] = entries["row"][first][flagged]
    flags["code"] = np.where(duplicate[flagged], DUPLICATE, CONFLICT)
    return flags[np.argsort(flags["row"], kind="stable")]


class CollisionStream:
    """The flags of every bucket merged in row order; `get(row)` for increasing rows."""

    def __init__(self, flag_files: list[Path]) -> None:
        self._merged = heapq.merge(*(_read_flags(path) for path in flag_files))
        self._next: tuple[int, int, int] | None = next(self._merged, None)
        self.count = sum(len(np.memmap(path, dtype=_FLAG, mode="r")) for path in flag_files)

    def get(self, row: int) -> Collision | None:
        """The collision of `row`, if any; rows must be asked for in increasing order."""
        found = None
        while self._next is not None and self._next[0] <= row:
            if self._next[0] == row and found is None:
                found = Collision(row, self._next[1], self._next[2] == DUPLICATE)
            self._next = next(self._merged, None)
        return found

    def __iter__(self) -> Iterator[Collision]:
        """Every colliding row once (the flags of one row come together; the first wins)."""
        while self._next is not None:
            collision = self.get(self._next[0])
            if collision is not None:
                yield collision


def _read_flags(path: Path) -> Iterator[tuple[int, int, int]]:
    flags = np.memmap(path, dtype=_FLAG, mode="r")
    for start in range(0, len(flags), FLUSH_ENTRIES):
        block = flags[start:start + FLUSH_ENTRIES]
        yield from zip(block["row"].tolist(), block["other"].tolist(), block["code"].tolist(), strict=True)


class RowNumbers:
    """A set of row numbers added in increasing order and read back in increasing order, in bounded
    memory (blocks of FLUSH_ENTRIES spill to a file): the rows a first pass found invalid."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "rows"
        self._block = array("q")
        self.count = 0

    def add(self, row: int) -> None:
        self._block.append(row)
        self.count += 1
        if len(self._block) >= FLUSH_ENTRIES:
            self._spill()

    def _spill(self) -> None:
        with open(self.path, "ab") as handle:
            self._block.tofile(handle)
        self._block = array("q")

    def reader(self) -> RowNumbersReader:
        """Membership for increasing rows (call once all rows are added)."""
        self._spill()
        return RowNumbersReader(self.path)


class RowNumbersReader:
    def __init__(self, path: Path) -> None:
        rows = np.memmap(path, dtype="<i8", mode="r") if path.exists() and path.stat().st_size else None
        self._rows = iter(() if rows is None else (int(row) for start in range(0, len(rows), FLUSH_ENTRIES)
                                                    for row in rows[start:start + FLUSH_ENTRIES].tolist()))
        self._next = next(self._rows, None)

    def __contains__(self, row: int) -> bool:
        """Whether `row` is in the set; rows must be asked for in increasing order."""
        while self._next is not None and self._next < row:
            self._next = next(self._rows, None)
        return self._next == row
