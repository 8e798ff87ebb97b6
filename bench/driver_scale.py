"""The driver's memory and speed against the manifest's length: `python -m bench.driver_scale`.

For each size (default 1e4, 1e5, 1e6 rows) and two kinds of manifest that need no compute,
"invalid" (every row lacks its style) and "done" (every row's output exists, labelled by an
earlier run as stylebatch labels its outputs), it runs the real `stylebatch submit` in a
fresh process and prints the driver's peak resident memory and rows per second. Outputs are
local files in nested folders (1,000 per folder). `--baseline PYTHON` runs the same
manifests with another checkout's interpreter (e.g. a worktree of an older commit) side by
side, and prints the ratio of the two speeds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.machine import print_machine
from pipeline.batch.records import output_metadata
from pipeline.storage.store import Storage, parse_location

IMAGES = Path(__file__).resolve().parents[1] / "manifests" / "images"
DONE_RUN = "20260101T000000Z-bench0"


def make_manifest(folder: Path, rows: int, kind: str) -> Path:
    """A CSV manifest of `rows` rows in `folder` (reused if already there); for "done", the outputs too:
    one real labelled output per output folder, written by Storage as a worker writes it, and hard
    links to it for the folder's other rows (so every output carries the label a stat reads)."""
    manifest = folder / f"{kind}-{rows}.csv"
    if manifest.exists():
        return manifest
    folder.mkdir(parents=True, exist_ok=True)
    content, style = IMAGES / "content" / "cat_chelsea.png", IMAGES / "style" / "texture_zebra.jpg"
    output_root = parse_location(str(folder / f"out-{kind}-{rows}"))
    storage = Storage()
    with open(manifest.with_suffix(".tmp"), "w") as handle:
        handle.write("content,style,output\n")
        for row in range(1, rows + 1):
            name = f"d{row // 1000:05d}/r{row:08d}.png"
            if kind == "invalid":
                handle.write(f"{content},,{name}\n")
                continue
            handle.write(f"{content},{style},{name}\n")
            output = output_root.child(name)
            if row == 1 or row % 1000 == 0:
                labelled = output
                record = {"row": row, "loss_total": 1.0, "evaluations": 300, "worker_host": "bench",
                          "device": "cpu", "started_at": "2026-01-01T00:00:00+00:00"}
                storage.write_bytes(output, b"", metadata=output_metadata(DONE_RUN, record))
            else:
                os.link(labelled.path, output.path)
    manifest.with_suffix(".tmp").rename(manifest)
    return manifest


def measure(python: str, manifest: Path, output: Path) -> dict[str, float]:
    """Run `stylebatch submit` under `python`: its peak RSS (MiB), wall and CPU seconds, exit code.

    CPU seconds (user + system) are what to compare on a shared machine: wall time also counts
    the time other processes had the cores."""
    results = output / f"_results-{time.monotonic_ns()}"
    command = [python, "-m", "pipeline", "submit", str(manifest), "--output", str(output), "--results", str(results)]
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode; "
             "usage = resource.getrusage(resource.RUSAGE_CHILDREN); "
             "print(time.perf_counter() - t, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, code)")
    done = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, check=True,
                          env={**os.environ, "RAY_ADDRESS": ""}, cwd=manifest.parent)  # not a checkout: each
    # interpreter then imports the stylebatch it was installed with
    seconds, cpu_seconds, max_rss_kib, code = done.stdout.split()
    return {"seconds": float(seconds), "cpu_seconds": float(cpu_seconds), "rss_mib": int(max_rss_kib) / 1024,
            "code": int(code)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="10000,100000,1000000", help="comma-separated manifest sizes")
    parser.add_argument("--kinds", default="invalid,done")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/stylebatch-driver-scale"),
                        help="where manifests and outputs are made (and kept for reuse)")
    parser.add_argument("--baseline", help="another interpreter (an older checkout's venv python) to compare")
    args = parser.parse_args()
    print_machine()
    args.workdir.mkdir(parents=True, exist_ok=True)
    header = "| rows | kind | driver peak RSS | seconds | rows/s | rows per CPU-second |"
    if args.baseline:
        header += " baseline RSS | baseline rows/s | baseline rows per CPU-s | speed-up (CPU) |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for kind in args.kinds.split(","):
        for rows in map(int, args.rows.split(",")):
            manifest = make_manifest(args.workdir, rows, kind)
            output = args.workdir / f"out-{kind}-{rows}"
            ours = measure(sys.executable, manifest, output)
            line = (f"| {rows:,} | {kind} | {ours['rss_mib']:.0f} MiB | {ours['seconds']:.1f} | "
                    f"{rows / ours['seconds']:,.0f} | {rows / ours['cpu_seconds']:,.0f} |")
            if args.baseline:
                theirs = measure(args.baseline, manifest, output)
                line += (f" {theirs['rss_mib']:.0f} MiB | {rows / theirs['seconds']:,.0f} | "
                         f"{rows / theirs['cpu_seconds']:,.0f} | {theirs['cpu_seconds'] / ours['cpu_seconds']:.1f}x |")
            print(line, flush=True)
            print(json.dumps({"rows": rows, "kind": kind, **ours}), file=sys.stderr)


if __name__ == "__main__":
    main()
