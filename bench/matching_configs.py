"""Matching configurations side by side: seconds per loss evaluation, ratio to the VGG-19
floor, final objective evaluated with exact matching, and peak memory.

Each configuration runs a whole synthesis (the default 3-level pyramid at the given size,
`--iterations` per level) in this one process, one after the other, with the floor (VGG
forward+backward alone at the finest size) measured right before each. Seconds per
evaluation are those of the finest level (size/size): the level's wall time, setup
included (style features, patch bank, principal basis), over its evaluations, so the
refreshes are amortised exactly as a real run pays them.

    .venv/bin/python -m bench.matching_configs --size 256 --iterations 100
    .venv/bin/python -m bench.matching_configs --size 512 --iterations 30
"""

from __future__ import annotations

import argparse
import statistics

from bench.common import (
    CONTENT,
    DEFAULT,
    STYLE,
    demo_rgb,
    describe_matching,
    gib,
    network_input,
    peak_memory_bytes,
    print_table,
    reset_peak_memory,
    vgg_floor,
)
from bench.machine import load_average, print_machine
from stylecore import FusionParams, Stylizer, SynthesisProgress

CONFIGURATIONS: dict[str, dict[str, int]] = {
    "exact (match_every=1), the paper": {"match_every": 1},
    "exact search, refresh every 10": {"match_every": 10, "search_dim": 0},
    "reduced d=128 r=8, refresh every 5": {"match_every": 5, "search_dim": 128, "search_candidates": 8},
    "reduced d=128 r=8, refresh every 10": {"match_every": 10, "search_dim": 128, "search_candidates": 8},
    "reduced d=128 r=8, refresh every 20": {"match_every": 20, "search_dim": 128, "search_candidates": 8},
    "reduced d=64 r=8, refresh every 10": {"match_every": 10, "search_dim": 64, "search_candidates": 8},
}


def finest_level_seconds_per_evaluation(reports: list[SynthesisProgress]) -> float:
    """Wall time of the last level (from the end of the previous one) over its evaluations."""
    last = reports[-1].level
    before = [report.elapsed for report in reports if report.level < last]
    finest = [report for report in reports if report.level == last]
    return (finest[-1].elapsed - (before[-1] if before else 0.0)) / len(finest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="long side of synthesis and style")
    parser.add_argument("--iterations", type=int, default=100, help="L-BFGS evaluations per level")
    parser.add_argument("--only", nargs="*", help="run only configurations whose name contains one of these")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    stylizer = Stylizer("caffe", args.device)
    print_machine()
    print(f"{args.size}/{args.size}, {DEFAULT.levels} levels x {args.iterations} evaluations; "
          f"default matching: {describe_matching(DEFAULT)}")
    content, style = demo_rgb(CONTENT, args.size), demo_rgb(STYLE, args.size)
    floor_image = network_input(stylizer, CONTENT, args.size)
    rows = []
    for name, overrides in CONFIGURATIONS.items():
        if args.only and not any(part in name for part in args.only):
            continue
        params = FusionParams(size=args.size, iterations=args.iterations).with_overrides(**overrides)
        floor = statistics.median(vgg_floor(stylizer, floor_image, params.layers) for _ in range(3))
        reports: list[SynthesisProgress] = []
        reset_peak_memory(stylizer.device)
        result = stylizer(content, style, params, callback=reports.append)
        peak = peak_memory_bytes(stylizer.device)
        per_evaluation = finest_level_seconds_per_evaluation(reports)
        rows.append([name, f"{per_evaluation:.3f}", f"{floor:.3f}", f"{per_evaluation / floor:.2f}x",
                     f"{result.losses.total:.5g}", gib(peak), f"{result.seconds:.0f}", load_average()])
        print(f"done: {name}: {rows[-1]}", flush=True)
    print_table(["configuration", "s/eval (finest level)", "VGG fwd+bwd s", "ratio", "final exact objective",
                 "peak memory", "whole run s", "load after"], rows)


if __name__ == "__main__":
    main()
