"""Pipeline throughput against the number of worker actors on one machine.

Runs the real pipeline (local Ray, local files, the shipped images) with N = 1, 2, ...
CPU workers of the same torch thread count, alternating the configurations over several
rounds in one process, and prints rows/minute and the scaling ratio to N = 1. Rows/minute
is measured over the processing window of each run (first row started to last row
finished, from the results table), so Ray and worker start-up are excluded; the wall time
with start-up is printed too. For reference, the same rows are also run by N plain
processes without Ray (each with its own VGG-19 and the same threads): the scaling the
machine itself allows, which the pipeline can at best match.

By default every row stylizes the same pair (seeds differ), so every row costs the same
and N workers split them evenly: the ratio measures the pipeline, not how unequal rows
happened to fall at the end of a short run (a dataset-scale run has no such tail).
`--mixed` cycles over all the shipped images instead (rows of unequal cost).

    .venv/bin/python -m bench.throughput --rows 8 --size 128 --iters 30 --rounds 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc
import torch

from bench.common import CONTENT, IMAGES, STYLE, print_table
from bench.machine import load_average, print_machine
from pipeline.batch.results import read_results
from pipeline.batch.runner import RunConfig, run
from pipeline.storage.store import Storage, parse_location
from stylecore import FusionParams, Stylizer, load_image


def write_manifest(folder: Path, rows: int, mixed: bool) -> Path:
    """`rows` rows of the benchmarks' pair, or with `mixed` cycling over every shipped image."""
    contents = sorted((IMAGES / "content").iterdir()) if mixed else [IMAGES / CONTENT]
    styles = sorted((IMAGES / "style").iterdir()) if mixed else [IMAGES / STYLE]
    lines = ["content,style,seed"] + [f"{contents[i % len(contents)]},{styles[i % len(styles)]},{i}"
                                      for i in range(rows)]
    path = folder / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _bare_rows(task: tuple[list[tuple[str, str, int]], int, FusionParams]) -> tuple[float, float]:
    """One plain process: load VGG-19, stylize its share of the rows; (first start, last end) epoch seconds."""
    rows, threads, params = task
    torch.set_num_threads(threads)
    stylizer = Stylizer("caffe", "cpu")
    started = time.time()
    for content, style, seed in rows:
        stylizer(load_image(content), load_image(style), params.with_overrides(seed=seed))
    return started, time.time()


def measure_bare(manifest: Path, workers: int, threads: int, params: FusionParams) -> float:
    """Rows/minute of `workers` plain processes sharing the manifest's rows round-robin, over the
    processing window (start-up excluded, as for the pipeline)."""
    rows = [(content, style, int(seed)) for content, style, seed
            in (line.split(",") for line in manifest.read_text().splitlines()[1:])]
    shares = [(rows[index::workers], threads, params) for index in range(workers)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        windows = pool.map(_bare_rows, shares)
    return len(rows) / (max(end for _, end in windows) - min(start for start, _ in windows)) * 60


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
    parser.add_argument("--mixed", action="store_true", help="rows cycling over every shipped image (unequal cost)")
    args = parser.parse_args()
    params = FusionParams(size=args.size, levels=args.levels, iterations=args.iters)
    print_machine()
    print(f"rows {args.rows}, size {args.size}, levels {args.levels}, iters {args.iters}, "
          f"match_every {params.matching.match_every}, {args.threads} thread(s) per worker, "
          f"{'every shipped image cycled' if args.mixed else f'{CONTENT} x {STYLE} in every row'}")
    results: dict[int, list[dict[str, float]]] = {n: [] for n in args.workers}
    bare: dict[int, list[float]] = {n: [] for n in args.workers}
    with tempfile.TemporaryDirectory(prefix="sb-throughput-") as scratch:
        manifest = write_manifest(Path(scratch), args.rows, args.mixed)
        for round_number in range(args.rounds):
            for workers in args.workers:
                result = measure(manifest, Path(scratch) / f"out-{workers}", workers, args.threads, params)
                results[workers].append(result)
                print(f"round {round_number + 1}: {workers} worker(s): {result['rows_per_minute']:.2f} rows/min "
                      f"(window {result['window']:.1f} s, wall {result['wall']:.1f} s)", flush=True)
                bare[workers].append(measure_bare(manifest, workers, args.threads, params))
                print(f"round {round_number + 1}: {workers} plain process(es), no Ray: "
                      f"{bare[workers][-1]:.2f} rows/min", flush=True)
    base = max(r["rows_per_minute"] for r in results[args.workers[0]]) / args.workers[0]
    bare_base = max(bare[args.workers[0]]) / args.workers[0]
    rows = []
    for workers, runs in results.items():
        best = max(r["rows_per_minute"] for r in runs)
        rows.append([str(workers), str(args.threads), f"{best:.2f}", f"{best / workers:.2f}", f"{best / base:.2f}x",
                     f">= {0.9 * workers:.1f}x", f"{max(bare[workers]) / bare_base:.2f}x"])
    print()
    print_table(["workers", "threads each", "rows/min (best of rounds)", "per worker", "scaling vs 1 worker",
                 "target", "plain processes, no Ray: scaling"], rows)
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
