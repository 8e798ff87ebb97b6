"""How the style weight that keeps the default's look depends on the size (issue 16's size grid).

For each shipped pair: the default at `--reference` px (384, where the weights are calibrated),
then at each of `--sizes` with the same weights at every size (`style_size_exponent=0`) times
each of `--factors` (`style_strength`). Every result is measured at its own size and downsampled
to `--common-size`: the structure score and the Gram and MRF ratios of bench.quality. The factor
whose row at the common size is closest to the reference row is the one that keeps the look at
that size; `FusionParams.style_size_exponent` is fitted to those factors (BENCHMARKS.md, "The
same look at every size"). 3 levels x 100 steps at 768 px takes minutes per result on a CPU and
seconds on a GPU.

    .venv/bin/python -m bench.size_grid [--pairs cat_zebra] [--sizes 192 768] [--factors 0.5 0.7 1 1.5]
        [--reference 384] [--common-size 192] [--levels 3] [--iterations 100]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from bench.common import print_table
from bench.machine import load_average, print_machine
from bench.quality import PAIRS, look, measure, measures
from stylecore import FusionParams, Stylizer


def row(stylizer: Stylizer, pair: str, params: FusionParams, common: int, label: str) -> list[str]:
    """One result's measures at its own size and at `common`, as table cells."""
    found = measure(stylizer, pair, params, None, label)
    cells = [pair, str(params.size), label, *measures(found.structure, found.ratios),
             *measures(*look(stylizer, pair, found.image, common)), f"{found.seconds:.0f}"]
    print(f"done: {cells} (load {load_average()})", flush=True)
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", choices=sorted(PAIRS), default=list(PAIRS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[192, 256, 768, 1024])
    parser.add_argument("--factors", nargs="+", type=float, default=[0.35, 0.5, 0.7, 1.0, 1.5, 1.7],
                        help="style_strength values tried at each size, the weights otherwise fixed")
    parser.add_argument("--reference", type=int, default=384)
    parser.add_argument("--common-size", type=int, default=192)
    parser.add_argument("--levels", type=int, default=FusionParams().levels)
    parser.add_argument("--iterations", type=int, default=FusionParams().iterations, help="steps per level")
    args = parser.parse_args()
    fixed = FusionParams(style_size_exponent=0.0, levels=args.levels, iterations=args.iterations)

    print_machine()
    stylizer = Stylizer("caffe", "auto")
    rows = []
    for pair in args.pairs:
        rows.append(row(stylizer, pair, replace(fixed, size=args.reference), args.common_size, "reference"))
        for size in args.sizes:
            for factor in args.factors:
                params = replace(fixed, size=size, style_strength=factor)
                rows.append(row(stylizer, pair, params, args.common_size, f"x{factor:g}"))
    print(f"\nstyle weights x factor at each size (the same weights at every size otherwise), {args.levels} levels x "
          f"{args.iterations} steps, seed 0; torch {torch.__version__}; load at the end {load_average()}")
    common = args.common_size
    print_table(["pair", "size", "style", "structure", "Gram ratio", "MRF ratio", f"structure at {common}",
                 f"Gram ratio at {common}", f"MRF ratio at {common}", "seconds"], rows)


if __name__ == "__main__":
    main()
