"""The process's allocator: evaluations with freed memory retained (the default) or given back.

Retention is process-wide and set when the `Stylizer` is built, so each configuration
runs in its own fresh process, alternated over `--rounds`. Each process times, at
`--size` synthesis/style, a whole default synthesis of `--iterations` evaluations per
level, VGG-19 forward+backward alone (the floor), a default
evaluation that reuses its matches, one that refreshes them with the reduced search, and
an exact one (medians of `--repeats` after a warm-up), then runs `--evaluations` reusing
evaluations at each of the sizes `--size`, half of it and `--size` again, as a worker
meeting rows of different sizes would, with the minor page faults of the last
evaluation and the resident memory after it.

    .venv/bin/python -m bench.allocator [--size 512] [--rounds 2] [--repeats 3] [--iterations 30]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys

import torch

from bench.common import (
    CONTENT,
    DEFAULT,
    EXACT,
    STYLE,
    current_memory_bytes,
    demo_rgb,
    gib,
    network_input,
    print_table,
    vgg_floor,
)
from bench.loss_breakdown import one_evaluation
from bench.machine import load_average, print_machine
from stylecore import Stylizer
from stylecore.objective import FusionObjective

CONFIGURATIONS = {"default glibc malloc (freed memory unmapped)": False, "freed memory retained": True}
TIMED = ("default synthesis", "VGG fwd+bwd", "default, reuse", "default, refresh (reduced)", "exact")


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(retain: bool, size: int, repeats: int, evaluations: int, iterations: int,
            device: str) -> dict[str, float]:
    """Seconds of a synthesis and of each timed evaluation, then faults and resident memory across sizes."""
    stylizer = Stylizer("caffe", device, retain_memory=retain)
    synthesis = stylizer(demo_rgb(CONTENT, size), demo_rgb(STYLE, size),
                         DEFAULT.with_overrides(size=size, iterations=iterations)).seconds
    content = network_input(stylizer, CONTENT, size)
    style = network_input(stylizer, STYLE, size)
    image = content + 8 * torch.randn(content.shape, generator=torch.Generator().manual_seed(0)).to(content.device)
    default = FusionObjective(stylizer.extractor, content, style, DEFAULT)
    exact = FusionObjective(stylizer.extractor, content, style, EXACT)
    _, target = one_evaluation(default, image, "reduced")
    samples: dict[str, list[float]] = {name: [] for name in TIMED[1:]}
    for _ in range(repeats + 1):  # the first round warms up and is discarded
        samples["VGG fwd+bwd"].append(vgg_floor(stylizer, image, exact.layers))
        samples["default, reuse"].append(sum(one_evaluation(default, image, None, target)[0].values()))
        samples["default, refresh (reduced)"].append(sum(one_evaluation(default, image, "reduced")[0].values()))
        samples["exact"].append(sum(one_evaluation(exact, image, "exact")[0].values()))
    figures = {name: statistics.median(values[1:]) for name, values in samples.items()}
    figures["default synthesis"] = synthesis
    for step, side in enumerate((size, size // 2, size)):
        content = network_input(stylizer, CONTENT, side)
        objective = FusionObjective(stylizer.extractor, content, network_input(stylizer, STYLE, side), DEFAULT)
        _, target = one_evaluation(objective, content, "reduced")
        for _ in range(evaluations):
            before = minor_faults()
            one_evaluation(objective, content, None, target)
            faults = minor_faults() - before
        figures[f"faults {step}"] = faults
        figures[f"resident {step}"] = current_memory_bytes(stylizer.device)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=30, help="per level, for the whole synthesis")
    parser.add_argument("--evaluations", type=int, default=10, help="per size, for faults and resident memory")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", choices=["retain", "release"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        figures = measure(args.child == "retain", args.size, args.repeats, args.evaluations, args.iterations,
                          args.device)
        print(json.dumps(figures))
        return
    print_machine()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGURATIONS}
    for _ in range(args.rounds):
        for name, retain in CONFIGURATIONS.items():
            command = [sys.executable, "-m", "bench.allocator", "--child", "retain" if retain else "release",
                       "--size", str(args.size), "--repeats", str(args.repeats),
                       "--evaluations", str(args.evaluations), "--iterations", str(args.iterations),
                       "--device", args.device]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(done.stdout.splitlines()[-1]))
    sides = (args.size, args.size // 2, args.size)
    rows = []
    for name, results in runs.items():
        median = {key: statistics.median(result[key] for result in results) for key in results[0]}
        rows.append([name, *(f"{median[stage]:.3f}" for stage in TIMED),
                     " / ".join(f"{median[f'faults {step}']:.0f}" for step in range(3)),
                     " / ".join(gib(int(median[f"resident {step}"])) for step in range(3))])
    print(f"\n{args.size}/{args.size}, synthesis {DEFAULT.levels} levels x {args.iterations}; seconds are "
          f"medians over {args.rounds} rounds of medians of {args.repeats}")
    print_table(["allocator", *(f"{stage} s" for stage in TIMED),
                 f"faults, last evaluation at {' / '.join(map(str, sides))} px",
                 f"resident after {' / '.join(map(str, sides))} px"], rows)
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
