"""Pipeline throughput against the number of worker actors on one machine.

Runs the real pipeline (local Ray, local files, the shipped images) with N = 1, 2, ...
CPU workers of the same torch thread count, alternating the configurations over several
rounds in one process, and prints rows/minute and the scaling ratio to N = 1. Rows/minute
is measured over the processing window of each run (first row started to last row
finished, from the results table), so Ray and worker start-up are excluded; the wall time
with start-up is printed too.

    python bench/throughput.py --rows 8 --size 128 --iters 30 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc

from pipeline.results import read_results
from pipeline.runner import RunConfig, run
from pipeline.storage import Storage, parse_location
from stylecore import FusionParams

IMAGES = Path(__file__).resolve().parents[1] / "manifests" / "images"


def write_manifest(folder: Path, rows: int) -> Path:
    """`rows` rows cycling over the shipped content and style images."""
    contents = sorted((IMAGES / "content").iterdir())
    styles = sorted((IMAGES / "style").iterdir())
    lines = ["content,style,seed"] + [f"{contents[i % len(contents)]},{styles[i % len(styles)]},{i}"
                                      for i in range(rows)]
    path = folder / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def measure(manifest: Path, output: Path, workers: int, threads: int, params: FusionParams) -> dict[str, float]:
    """One run; returns rows/minute over the processing window and the wall time."""
    started = time.perf_counter()
    config = RunConfig(parse_location(str(manifest)), parse_location(str(output)),
                       parse_location(str(output / "_results")), params, workers=workers, threads=threads,
                       force=True)
    summary = run(config)
    wall = time.perf_counter() - started
    if summary.counts["ok"] != summary.total:
        raise RuntimeError(f"{summary.total - summary.counts['ok']} rows did not finish: {summary.failures}")
    table = read_results(Storage(), config.results, ["status", "started_at", "finished_at"])
    table = table.filter(pc.equal(table["run_id"], summary.run_id))
    window = (pc.max(table["finished_at"]).as_py() - pc.min(table["started_at"]).as_py()).total_seconds()
    return {"rows_per_minute": summary.total / window * 60, "window": window, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=2, help="alternating repetitions of every configuration")
    args = parser.parse_args()
    params = FusionParams(size=args.size, levels=args.levels, iterations=args.iters)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"load before: {os.getloadavg()[0]:.2f}")
    print(f"rows {args.rows}, size {args.size}, levels {args.levels}, iters {args.iters}, "
          f"match_every {params.match_every}, {args.threads} thread(s) per worker")
    results: dict[int, list[dict[str, float]]] = {n: [] for n in args.workers}
    with tempfile.TemporaryDirectory(prefix="sb-throughput-") as scratch:
        manifest = write_manifest(Path(scratch), args.rows)
        for round_number in range(args.rounds):
            for workers in args.workers:
                result = measure(manifest, Path(scratch) / f"out-{workers}", workers, args.threads, params)
                results[workers].append(result)
                print(f"round {round_number + 1}: {workers} worker(s): {result['rows_per_minute']:.2f} rows/min "
                      f"(window {result['window']:.1f} s, wall {result['wall']:.1f} s)", flush=True)
    base = max(r["rows_per_minute"] for r in results[args.workers[0]]) / args.workers[0]
    print("\n| workers | threads each | rows/min (best of rounds) | per worker | scaling vs 1 worker | "
          "target |\n|---|---|---|---|---|---|")
    for workers, runs in results.items():
        best = max(r["rows_per_minute"] for r in runs)
        print(f"| {workers} | {args.threads} | {best:.2f} | {best / workers:.2f} | "
              f"{best / base:.2f}x | >= {0.9 * workers:.1f}x |")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
