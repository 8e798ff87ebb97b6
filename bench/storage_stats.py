"""What the batch driver's skip check costs per row on local outputs: Storage.stat_many in chunks of 1000,
against a bare os.stat, with the per-row checks beside it (check_confined, check_storable_name,
Location.child). Half the outputs carry metadata (extended attributes), a quarter do not exist.

    .venv/bin/python -m bench.storage_stats --files 100000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.storage.store import Location, ObjectInfo, Storage, check_storable_name, parse_location

_CHUNK = 1000


def _per_item_us(label: str, count: int, action: Callable[[], object], rounds: int) -> None:
    best = min(_timed(action) for _ in range(rounds))
    print(f"{label:<48} {best / count * 1e6:8.2f} us/row   ({count / best:,.0f} rows/s)")


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as temporary:
        out = parse_location(temporary).child("out")
        storage = Storage()
        names = [f"style-{index % 10}/content-{index:07d}.png" for index in range(args.files)]
        for index, name in enumerate(names):
            if index % 4 != 3:
                metadata = {"run": "run-0001", "row": str(index)} if index % 2 == 0 else None
                storage.write_bytes(out.child(name), b"x", metadata=metadata)
        locations = [out.child(name) for name in names]
        paths = [location.path for location in locations]
        chunks = [locations[start:start + _CHUNK] for start in range(0, len(locations), _CHUNK)]

        def bare_stat() -> None:
            for path in paths:
                try:
                    os.stat(path)
                except FileNotFoundError:
                    continue

        def stat_many() -> list[list[ObjectInfo | None]]:
            return [storage.stat_many(chunk) for chunk in chunks]

        def stat_many_without_metadata() -> list[list[ObjectInfo | None]]:
            return [storage.stat_many(chunk, with_metadata=False) for chunk in chunks]

        def confined() -> None:
            for location in locations:
                storage.check_confined(location, out)

        def storable() -> None:
            for location in locations:
                check_storable_name(location)

        def children() -> list[Location]:
            return [out.child(name) for name in names]

        found = sum(info is not None for chunk in stat_many() for info in chunk)
        print(f"{args.files:,} outputs ({found:,} exist), chunks of {_CHUNK}, best of {args.rounds} rounds, "
              f"load {Path('/proc/loadavg').read_text().split()[0]}")
        _per_item_us("os.stat alone (the floor)", args.files, bare_stat, args.rounds)
        _per_item_us("Storage.stat_many (stat + metadata)", args.files, stat_many, args.rounds)
        _per_item_us("Storage.stat_many(with_metadata=False)", args.files, stat_many_without_metadata, args.rounds)
        _per_item_us("Storage.check_confined (cached folders)", args.files, confined, args.rounds)
        _per_item_us("check_storable_name", args.files, storable, args.rounds)
        _per_item_us("Location.child (building the output location)", args.files, children, args.rounds)


if __name__ == "__main__":
    main()
