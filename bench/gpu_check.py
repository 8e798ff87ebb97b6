"""The GPU check: one command that says how stylecore runs on a GPU (prepared on a machine without one).

On one GPU, in well under 8 minutes (an H200 is expected to need 2-4), it prints four tables:

1. Host syncs: a default 512/512 synthesis (2 levels x 20 steps) under
   `torch.cuda.set_sync_debug_mode("warn")`, no progress bar read: syncs inside the
   optimisation loops (per step) and outside them (per level: setup, end), with the Python
   lines that caused them. The design target is 0 per step and a handful per level.
2. Seconds per evaluation at 384/384 and 512/512, default and exact matching: the time of a
   one-level synthesis of `--steps-long` steps minus one of `--steps-short` steps, over the
   difference in evaluations (setup and the final read cancel out), next to VGG-19
   forward+backward alone.
3. Default against exact, end to end: the default pyramid (3 levels x 100) at 384 and 512 px
   on the astronaut x Great Wave, each result's objective evaluated with exact float32 matching
   (`stylecore.metrics.exact_objective`), and the default's distance from the exact run's.
4. Rows per minute of 1, 2, 4 and 8 syntheses at once on the GPU (`--concurrency`), each a
   separate process with its own VGG-19 (as the pipeline's fractional-GPU workers are), rows
   of the product's defaults (384 px, 3 levels x 100), start-up excluded: the window runs from
   the first row's start to the last row's end.

A section that would start after `--budget-minutes` is skipped with a line saying so.

    .venv/bin/python -m bench.gpu_check [--device cuda] [--budget-minutes 7.5]
    .venv/bin/python -m bench.gpu_check --device cpu --tiny    # a smoke test of the script itself
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
import warnings
from collections import Counter
from dataclasses import dataclass

import torch

from bench.common import (
    CONTENT,
    DEFAULT,
    EXACT,
    STYLE,
    demo_rgb,
    gib,
    print_table,
    synchronize,
    vgg_floor,
)
from bench.machine import load_average, print_machine
from stylecore import FusionParams, Stylizer, SynthesisProgress
from stylecore.matching import SearchSettings
from stylecore.metrics import exact_objective

SYNC_MESSAGE = "synchroniz"  # torch's warning: "called a synchronizing CUDA operation"


@dataclass(frozen=True)
class Sizes:
    """What each section runs; `--tiny` shrinks everything for a CPU smoke test."""

    sync_size: int = 512
    sync_levels: int = 2
    sync_steps: int = 20
    eval_sizes: tuple[int, ...] = (384, 512)
    steps_short: int = 20
    steps_long: int = 60
    e2e_sizes: tuple[int, ...] = (384, 512)
    e2e_levels: int = 3
    e2e_steps: int = 100
    row_size: int = 384
    row_levels: int = 3
    row_steps: int = 100


TINY = Sizes(48, 1, 3, (48,), 2, 4, (48,), 1, 3, 40, 1, 2)


def count_syncs(stylizer: Stylizer, sizes: Sizes) -> None:
    """Section 1: host syncs of a default synthesis, inside and outside its optimisation loops."""
    params = DEFAULT.with_overrides(size=sizes.sync_size, levels=sizes.sync_levels, iterations=sizes.sync_steps)
    content, style = demo_rgb(CONTENT, sizes.sync_size), demo_rgb(STYLE, sizes.sync_size)
    stylizer(content, style, params)  # warm-up: cuDNN's benchmark and the allocator's first blocks
    if stylizer.device.type != "cuda":
        print("host syncs: not counted on a CPU (torch.cuda.set_sync_debug_mode needs CUDA)\n")
        return
    marks: list[tuple[int, int, int]] = []  # (level, step, syncs so far), taken at each evaluation
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        def syncs_so_far() -> int:
            return sum(SYNC_MESSAGE in str(warning.message) for warning in caught)

        def mark(report: SynthesisProgress) -> None:  # reads no loss: costs no sync itself
            marks.append((report.level, report.iteration, syncs_so_far()))

        torch.cuda.set_sync_debug_mode("warn")
        try:
            stylizer(content, style, params, callback=mark)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        total = syncs_so_far()
        sites = Counter(f"{warning.filename}:{warning.lineno}" for warning in caught
                        if SYNC_MESSAGE in str(warning.message))
    rows, inside = [], 0
    for level in range(1, params.levels + 1):
        counts = [count for mark_level, _, count in marks if mark_level == level]
        loop = counts[-1] - counts[0]  # between the evaluation of the level's start and its last step
        inside += loop
        rows.append([f"{level}", f"{params.iterations}", f"{loop}", f"{loop / params.iterations:.2f}"])
    print(f"host syncs of a default {sizes.sync_size}/{sizes.sync_size} synthesis, {params.levels} levels x "
          f"{params.iterations} steps, no loss read: {total} in all, {inside} inside the optimisation loops, "
          f"{total - inside} outside them ({(total - inside) / params.levels:.1f} per level)")
    print_table(["level", "steps", "syncs in its loop", "syncs per step"], rows)
    print("where the syncs came from (Python line: count):")
    for site, count in sites.most_common(12):
        print(f"  {site}: {count}")
    print()


def timed_synthesis(stylizer: Stylizer, content: torch.Tensor, style: torch.Tensor, params: FusionParams) -> float:
    synchronize(stylizer.device)
    started = time.perf_counter()
    stylizer(content, style, params)  # returns after reading its losses back: the GPU's work is done
    return time.perf_counter() - started


def seconds_per_evaluation(stylizer: Stylizer, sizes: Sizes) -> None:
    """Section 2: seconds per evaluation, by difference of a long and a short one-level synthesis."""
    rows = []
    for size in sizes.eval_sizes:
        content, style = demo_rgb(CONTENT, size), demo_rgb(STYLE, size)
        image = stylizer.extractor.normalization(content.to(stylizer.device))
        floor = statistics.median(vgg_floor(stylizer, image, DEFAULT.layers) for _ in range(5))
        for name, base in (("default", DEFAULT), ("exact", EXACT)):
            params = base.with_overrides(size=size, levels=1)
            stylizer(content, style, params.with_overrides(iterations=2))  # warm-up at this size
            short = timed_synthesis(stylizer, content, style, params.with_overrides(iterations=sizes.steps_short))
            long = timed_synthesis(stylizer, content, style, params.with_overrides(iterations=sizes.steps_long))
            per_evaluation = (long - short) / (sizes.steps_long - sizes.steps_short)
            rows.append([f"{size}/{size}", name, f"{per_evaluation * 1000:.1f}", f"{floor * 1000:.1f}",
                         f"{per_evaluation / floor:.2f}x", f"{short:.2f} / {long:.2f}"])
    print(f"seconds per evaluation: one level of {sizes.steps_long} steps minus one of {sizes.steps_short}, "
          f"over the {sizes.steps_long - sizes.steps_short} evaluations between them (the default's schedule "
          f"of refreshes included)")
    print_table(["synthesis/style", "matching", "ms per evaluation", "VGG fwd+bwd ms", "ratio",
                 f"seconds ({sizes.steps_short} / {sizes.steps_long} steps)"], rows)
    print()


def default_against_exact(stylizer: Stylizer, sizes: Sizes) -> None:
    """Section 3: the default pyramid with default and exact matching, compared on the exact objective."""
    rows = []
    for size in sizes.e2e_sizes:
        content, style = demo_rgb(CONTENT, size), demo_rgb(STYLE, size)
        runs = {}
        for name, base in (("default", DEFAULT), ("exact", EXACT)):
            params = base.with_overrides(size=size, levels=sizes.e2e_levels, iterations=sizes.e2e_steps)
            result = stylizer(content, style, params)
            runs[name] = result, exact_objective(stylizer.extractor, result.image, content, style, params).total
        reference = runs["exact"][1]
        for name, (result, objective) in runs.items():
            against = "reference" if name == "exact" else f"{(objective - reference) / reference:+.2%}"
            rows.append([f"{size}/{size}", name, f"{result.seconds:.1f}",
                         f"{result.seconds / result.evaluations * 1000:.1f}", f"{result.losses.total:.5g}",
                         f"{objective:.5g}", against, f"{result.rejected_steps}", f"{result.worse_than_start}"])
    print(f"default against exact, {sizes.e2e_levels} levels x {sizes.e2e_steps} steps, {CONTENT} x {STYLE} "
          f"(exact objective: float32 exact matching of the returned image, untimed)")
    print_table(["synthesis/style", "matching", "seconds", "ms per evaluation", "own final loss", "exact objective",
                 "against exact", "rejected steps", "worse than start"], rows)
    print()


def _row_worker(index: int, device: str, rows: int, params: FusionParams, barrier: object,
                results: object) -> None:
    """One concurrent synthesis process: load VGG-19, warm up, wait for the others, run `rows` rows."""
    stylizer = Stylizer("caffe", device)
    content, style = demo_rgb(CONTENT, params.size or 384), demo_rgb(STYLE, params.size or 384)
    stylizer(content, style, params.with_overrides(iterations=2))
    barrier.wait()  # type: ignore[attr-defined]
    for _ in range(rows):
        started = time.monotonic()
        stylizer(content, style, params)
        results.put((index, started, time.monotonic()))  # type: ignore[attr-defined]
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() and device != "cpu" else 0
    results.put((index, -1.0, float(peak)))  # type: ignore[attr-defined]


def concurrent_rows(device: torch.device, sizes: Sizes, concurrency: list[int], rows_per_worker: int,
                    deadline: float) -> None:
    """Section 4: rows/min with N synthesis processes sharing the device."""
    context = multiprocessing.get_context("spawn")
    rows, base = [], None
    for count in concurrency:
        if time.monotonic() > deadline:
            print(f"{count} at once: skipped, over the time budget")
            continue
        budget = None
        if device.type == "cuda":  # share the device: each worker's search budget is a share of its memory
            total = torch.cuda.get_device_properties(device).total_memory
            budget = min(SearchSettings.for_device(device).budget_bytes, total // (4 * count))
        params = DEFAULT.with_overrides(size=sizes.row_size, levels=sizes.row_levels, iterations=sizes.row_steps,
                                        search_budget_bytes=budget)
        barrier, results = context.Barrier(count), context.Queue()
        workers = [context.Process(target=_row_worker, args=(index, str(device), rows_per_worker, params, barrier,
                                                             results)) for index in range(count)]
        for worker in workers:
            worker.start()
        finished: list[tuple[float, float]] = []
        peaks: list[float] = []
        while len(peaks) < count:
            _, started, value = results.get()
            if started < 0:
                peaks.append(value)
            else:
                finished.append((started, value))
        for worker in workers:
            worker.join()
        window = max(end for _, end in finished) - min(start for start, _ in finished)
        per_minute = len(finished) / window * 60
        base = base or per_minute
        rows.append([f"{count}", f"{len(finished)}", f"{window:.1f}", f"{per_minute:.2f}", f"{per_minute / base:.2f}x",
                     f"{statistics.mean(end - start for start, end in finished):.2f}",
                     gib(int(max(peaks))) if device.type == "cuda" else "-",
                     "-" if budget is None else f"{budget / 2**30:.1f} GiB"])
        print(f"done: {rows[-1]}", flush=True)
    print(f"rows per minute, N processes on one {device.type} device, each {rows_per_worker} rows of "
          f"{sizes.row_size} px, {sizes.row_levels} levels x {sizes.row_steps} steps, default matching")
    print_table(["processes", "rows", "window s", "rows/min", "against 1", "seconds per row (mean)",
                 "peak GPU memory per process", "search budget each"], rows)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rows-per-worker", type=int, default=2)
    parser.add_argument("--budget-minutes", type=float, default=7.5, help="skip sections that would start later")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke test of the script (e.g. on a CPU)")
    args = parser.parse_args()
    started = time.monotonic()
    deadline = started + args.budget_minutes * 60
    sizes = TINY if args.tiny else Sizes()
    stylizer = Stylizer("caffe", args.device)
    settings = SearchSettings.for_device(stylizer.device)
    print_machine()
    print(f"device {stylizer.device}; torch {torch.__version__}, CUDA {torch.version.cuda}; search settings "
          f"{settings}; TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN TF32 "
          f"{torch.backends.cudnn.allow_tf32}\n", flush=True)
    sections = [("host syncs", lambda: count_syncs(stylizer, sizes)),
                ("seconds per evaluation", lambda: seconds_per_evaluation(stylizer, sizes)),
                ("default against exact", lambda: default_against_exact(stylizer, sizes)),
                ("concurrent rows", lambda: concurrent_rows(stylizer.device, sizes, args.concurrency,
                                                            args.rows_per_worker, deadline))]
    for name, section in sections:
        if time.monotonic() > deadline:
            print(f"{name}: skipped, over the {args.budget_minutes} minute budget\n")
            continue
        section_started = time.monotonic()
        section()
        print(f"({name}: {time.monotonic() - section_started:.0f} s)\n", flush=True)
    print(f"total {time.monotonic() - started:.0f} s; load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
