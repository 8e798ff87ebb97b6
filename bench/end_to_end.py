"""End-to-end synthesis with the default (fast) matching against exact matching at every evaluation.

All run the default pyramid at `--size` on the same content and style in this process:
the fast runs (one per `--match-every` value), the exact run, then the fast runs again.
This machine's speed drifts by 10-20% within half an hour, so a fast run is timed on
both sides of the exact one and its speed-up taken against the mean of the two (both
are printed). Prints the difference of the final objectives, all evaluated with exact
matching on the returned images after the runs (untimed), and saves the first fast run
and the exact run side by side.

    .venv/bin/python -m bench.end_to_end --size 512 [--levels 3] [--iterations 100] [--match-every 10 5]
        [--variant exact_level_end=true] --output docs/fast_vs_exact.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from bench.common import (
    CONTENT,
    DEFAULT,
    EXACT,
    STYLE,
    demo_rgb,
    gib,
    peak_memory_bytes,
    print_table,
    reset_peak_memory,
)
from bench.machine import load_average, print_machine
from stylecore import FusionParams, LossTerms, Stylizer, SynthesisResult
from stylecore.metrics import exact_objective


def side_by_side(left: Image.Image, right: Image.Image, left_title: str, right_title: str) -> Image.Image:
    """The two images next to each other, each with a caption strip above it."""
    caption, gap = 22, 8
    canvas = Image.new("RGB", (left.width + gap + right.width, caption + max(left.height, right.height)), "white")
    canvas.paste(left, (0, caption))
    canvas.paste(right, (left.width + gap, caption))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 5), left_title, fill="black")
    draw.text((left.width + gap + 4, 5), right_title, fill="black")
    return canvas


def describe(params: FusionParams) -> str:
    """The run's matching, as the fields in which it differs from the default."""
    if params.matching.match_every == 1:
        return "exact matching at every evaluation"
    changed = [f"{name}={getattr(params.matching, name)}" for name in VARIED
               if getattr(params.matching, name) != getattr(DEFAULT.matching, name)]
    return "default matching" + (f" with {', '.join(changed)}" if changed else "")


VARIED = ("match_every", "search_dim", "search_candidates", "search_step", "exact_level_end", "reuse_min_patches")


def parse_variant(text: str) -> dict[str, object]:
    """'exact_level_end=true,search_step=1' -> overrides of the default matching."""
    overrides: dict[str, object] = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if name not in VARIED:
            raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(VARIED)}")
        overrides[name] = value.lower() == "true" if name == "exact_level_end" else int(value)
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--levels", type=int, default=DEFAULT.levels)
    parser.add_argument("--iterations", type=int, default=DEFAULT.iterations, help="L-BFGS steps per level")
    parser.add_argument("--seed", type=int, default=DEFAULT.seed)
    parser.add_argument("--content", default=CONTENT, help="relative to manifests/images")
    parser.add_argument("--style", default=STYLE, help="relative to manifests/images")
    parser.add_argument("--match-every", type=int, nargs="+", default=[DEFAULT.matching.match_every],
                        help="of the fast runs, one run each")
    parser.add_argument("--variant", type=parse_variant, action="append", default=[],
                        help="one more fast run with these overrides of the default, e.g. exact_level_end=true")
    parser.add_argument("--output", type=Path, default=Path("docs/fast_vs_exact.jpg"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    stylizer = Stylizer("caffe", args.device)
    print_machine()
    content, style = demo_rgb(args.content, args.size), demo_rgb(args.style, args.size)
    results: dict[str, SynthesisResult] = {}
    objectives: dict[str, LossTerms] = {}
    repeat_seconds: dict[str, float] = {}
    rows = []
    fast_runs = [*(DEFAULT.with_overrides(match_every=every) for every in args.match_every),
                 *(DEFAULT.with_overrides(**overrides) for overrides in args.variant)]
    for order, params in enumerate((*fast_runs, EXACT, *fast_runs)):
        params = params.with_overrides(size=args.size, levels=args.levels, iterations=args.iterations, seed=args.seed)
        reset_peak_memory(stylizer.device)
        result = stylizer(content, style, params)
        peak = peak_memory_bytes(stylizer.device)
        objective = exact_objective(stylizer.extractor, result.image, content, style, params)  # not timed
        name = describe(params)
        if order > len(fast_runs):
            repeat_seconds[name] = result.seconds
            name += ", again after the exact run"
        else:
            results[name], objectives[name] = result, objective
        rows.append([name, f"{result.seconds:.0f}", f"{result.seconds / result.evaluations:.2f}",
                     f"{result.losses.total:.6g}", f"{objective.total:.6g}", f"{objective.global_:.4g}",
                     f"{objective.local:.4g}", f"{objective.content:.4g}", f"{result.rejected_steps}",
                     f"{result.worse_than_start}", gib(peak), load_average()])
        print(f"done: {rows[-1]}", flush=True)
    exact_name = describe(EXACT)
    exact, exact_total = results.pop(exact_name), objectives[exact_name].total
    print(f"{args.size} px, {args.levels} levels x {args.iterations} steps, seed {args.seed}, "
          f"{args.content} stylized with {args.style}; the exact objective is evaluated on each returned "
          f"image after its run, untimed")
    print_table(["matching", "seconds", "s/eval (all levels)", "own final loss", "exact objective", "global",
                 "local", "content", "rejected steps", "worse than start", "peak memory", "load after"], rows)
    for name, fast in results.items():
        difference = (objectives[name].total - exact_total) / exact_total
        before, after = fast.seconds, repeat_seconds[name]
        print(f"{name}: speed-up {exact.seconds / ((before + after) / 2):.2f}x against the mean of its runs "
              f"before and after the exact one ({exact.seconds / before:.2f}x before, {exact.seconds / after:.2f}x "
              f"after); exact objective {difference:+.2%} against the exact run's")
    first = next(iter(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    side_by_side(results[first].to_pil(), exact.to_pil(),
                 f"fast: {results[first].seconds:.0f} s, exact objective {objectives[first].total:.4g}",
                 f"exact: {exact.seconds:.0f} s, exact objective {exact_total:.4g}").save(args.output)
    print(f"side by side: {args.output}")


if __name__ == "__main__":
    main()
