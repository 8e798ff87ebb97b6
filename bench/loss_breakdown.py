"""Where the time of one loss evaluation goes, for exact and for the default (fast) matching.

For 256/256 and 512/512 (synthesis/style long side) one evaluation is split into VGG
forward, Gram losses, nearest-patch search, MRF + content losses (matched-patch target
included) and backward, next to VGG forward+backward alone (the floor) measured in the
same run, with peak memory. The default matching reuses matches for `match_every`
evaluations, so it has three rows: an evaluation that refreshes with the reduced search,
one that reuses, and the average over a whole level of the schedule (reduced refreshes,
the end-of-level refresh over every patch and the level's principal-basis setup included).
A second table gives what one L-BFGS step costs on its own (history 25, the image's size):
stylecore's optimizer against torch.optim.LBFGS, on a cheap separable quadratic.

    .venv/bin/python -m bench.loss_breakdown [--sizes 256 512] [--repeats 3] [--iterations 100]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.common import (
    CONTENT,
    DEFAULT,
    EXACT,
    STYLE,
    describe_matching,
    gib,
    network_input,
    peak_memory_bytes,
    print_table,
    reset_peak_memory,
    synchronize,
    timed,
    vgg_floor,
)
from bench.machine import load_average, print_machine
from stylecore import Stylizer
from stylecore.lbfgs import minimize
from stylecore.losses import mrf_loss
from stylecore.matching import project_bank
from stylecore.modules import SearchKind
from stylecore.objective import FusionObjective
from stylecore.patches import MRFTarget, memory_format_of

STAGES = ("forward", "gram", "search", "mrf+content", "backward")


def one_evaluation(objective: FusionObjective, image: torch.Tensor, search: SearchKind | None,
                   target: MRFTarget | None = None) -> tuple[dict[str, float], MRFTarget]:
    """Seconds per stage of one evaluation, and the matched-patch target it used.

    `search` is a `SearchKind`: 'exact', 'reduced' or 'reduced_all' (match now), or None (reuse `target`).
    """
    params, local = objective.params, objective.local_loss
    assert objective.global_loss is not None and local is not None and objective.content_loss is not None
    device = image.device
    pixels = image.detach().clone().requires_grad_(True)
    seconds = {"search": 0.0}
    clock = [time.perf_counter()]

    def lap(stage: str) -> None:
        synchronize(device)
        now = time.perf_counter()
        seconds[stage] = now - clock[0]
        clock[0] = now

    features = objective.extractor(pixels, objective.layers)
    lap("forward")
    total = params.alpha_global * objective.global_loss(features)
    lap("gram")
    local_features = features[params.local_layer]
    if search is not None or target is None:
        index = local.matcher.match(local_features, search or "exact", local.matches)
        lap("search")
        height, width = local_features.shape[-2:]
        target = MRFTarget(local.bank, index, height, width, memory_format_of(local_features))
    total = total + params.alpha_local * mrf_loss(local_features, target)
    total = total + params.alpha_content * objective.content_loss(features[params.content_layer])
    lap("mrf+content")
    total.backward()
    lap("backward")
    return seconds, target


def measure(stylizer: Stylizer, size: int, repeats: int, iterations: int) -> list[list[str]]:
    """Table rows for one size: median stage times over `repeats` interleaved rounds."""
    content = network_input(stylizer, CONTENT, size)
    style = network_input(stylizer, STYLE, size)
    image = content + 8 * torch.randn(content.shape, generator=torch.Generator().manual_seed(0)).to(content.device)
    default = DEFAULT.with_overrides(iterations=iterations)
    exact_objective = FusionObjective(stylizer.extractor, content, style, EXACT)
    default_objective = FusionObjective(stylizer.extractor, content, style, default)
    assert default_objective.local_loss is not None
    basis_seconds = timed(lambda: project_bank(default_objective.local_loss.bank.normalized,
                                               default.matching.search_dim),
                          stylizer.device)
    cases = {"exact, every evaluation": (exact_objective, "exact"),
             "default, refresh (reduced search)": (default_objective, "reduced"),
             "default, reuse": (default_objective, None)}
    times: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    peaks: dict[str, int] = {name: 0 for name in cases}
    floors: list[float] = []
    level_end_on_default: list[float] = []
    for _ in range(repeats + 1):  # the first round warms up and is discarded
        target = None
        for name, (objective, search) in cases.items():
            reset_peak_memory(stylizer.device)
            seconds, target = one_evaluation(objective, image, search, target)
            times[name].append(seconds)
            peaks[name] = max(peaks[name], peak_memory_bytes(stylizer.device))
        level_end_on_default.append(one_evaluation(default_objective, image, "reduced_all")[0]["search"])
        floors.append(vgg_floor(stylizer, image, exact_objective.layers))
    floor = statistics.median(floors[1:])
    medians = {name: {stage: statistics.median(run[stage] for run in runs[1:]) for stage in STAGES}
               for name, runs in times.items()}
    assert default_objective.local_loss is not None
    # A level of N steps evaluates N + 1 points (its start and each step).
    schedule = [default_objective.local_loss.schedule.search_at(evaluation) for evaluation in range(iterations + 1)]
    search_cost = {"exact": medians["exact, every evaluation"]["search"],
                   "reduced": medians["default, refresh (reduced search)"]["search"],
                   "reduced_all": statistics.median(level_end_on_default[1:]), None: 0.0}
    target_cost = medians["default, refresh (reduced search)"]["mrf+content"] - medians["default, reuse"]["mrf+content"]
    level = dict(medians["default, reuse"])
    level["search"] = (sum(search_cost[kind] for kind in schedule) + basis_seconds) / len(schedule)
    level["mrf+content"] += target_cost * sum(kind is not None for kind in schedule) / len(schedule)
    refreshes = " + ".join(f"{schedule.count(kind)} {kind}" for kind in ("reduced", "reduced_all", "exact")
                           if kind in schedule)
    medians[f"default, level average ({refreshes} refreshes / {len(schedule)})"] = level
    peaks[list(medians)[-1]] = max(peaks["default, refresh (reduced search)"], peaks["default, reuse"])
    rows = []
    for name, stages in medians.items():
        total = sum(stages.values())
        rows.append([f"{size}/{size}", name, *(f"{stages[stage]:.3f}" for stage in STAGES), f"{total:.3f}",
                     f"{floor:.3f}", f"{total / floor:.2f}x", gib(peaks[name])])
    return rows


def optimizer_steps(image: torch.Tensor, history: int, steps: int) -> list[str]:
    """Milliseconds per L-BFGS step (the evaluation a cheap quadratic), ours and torch's, on an image's size."""
    curvature = torch.rand(image.shape, generator=torch.Generator().manual_seed(1)).to(image.device) * 99 + 1

    def evaluate(point: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return 0.5 * (curvature * point.square()).sum(), curvature * point

    ours = timed(lambda: minimize(evaluate, image, steps, history=history), image.device)
    parameter = image.detach().clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([parameter], lr=1.0, max_iter=steps, max_eval=2 * steps, history_size=history,
                                  tolerance_grad=0.0, tolerance_change=0.0)

    def closure() -> torch.Tensor:
        loss, gradient = evaluate(parameter.detach())
        parameter.grad = gradient
        return loss

    theirs = timed(lambda: optimizer.step(closure), image.device)
    return [f"{image.shape[-1]}x{image.shape[-2]}", f"{history}", f"{ours / steps * 1000:.1f}",
            f"{theirs / steps * 1000:.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=DEFAULT.iterations, help="per level, for the average")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    stylizer = Stylizer("caffe", args.device)
    print_machine()
    print(f"default matching: {describe_matching(DEFAULT)}; seconds are medians of {args.repeats} interleaved rounds")
    rows = [row for size in args.sizes for row in measure(stylizer, size, args.repeats, args.iterations)]
    print_table(["synthesis/style", "matching", *(f"{stage} s" for stage in STAGES), "total s", "VGG fwd+bwd s",
                 "ratio", "peak memory"], rows)
    steps = [optimizer_steps(network_input(stylizer, CONTENT, size), DEFAULT.lbfgs_history, 40) for size in args.sizes]
    print("one L-BFGS step alone (40 steps of a separable quadratic, history filling up):")
    print_table(["image", "history", "stylecore.lbfgs ms per step", "torch.optim.LBFGS ms per step"], steps)
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
