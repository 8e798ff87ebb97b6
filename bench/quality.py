"""Result quality of the default against the paper's settings on the shipped pairs (issue 16).

For each shipped pair at `--size` prints, per setting (the default, `FusionParams.paper()`, the
default with `preserve_color`): the structure score (1.0 = the content's edges kept, ~0 =
none), the Gram and MRF ratios (the result's distance to the style over the content's own:
lower = more style) and the seconds of the synthesis. Issue 16's targets: structure >= 0.6,
Gram ratio <= 0.1, MRF ratio <= 0.75. A colour-preserving result is measured against the
colour style (its ratios then include the colours it did not take) and, in the last columns,
its luminance against the luminance images it was made from.

`--sizes 192 384 768` adds the size table: the default's three measures per size and their
relative spread, (max - min) / min, which issue 16 wants below 15%.

    .venv/bin/python -m bench.quality [--size 384] [--pairs cat_zebra coffee_wave] [--settings default paper]
        [--sizes 192 384 768] [--size-pairs cat_zebra] [--levels 3] [--iterations 100] [--output-dir /tmp/q]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from bench.common import IMAGES, print_table
from bench.machine import load_average, print_machine
from stylecore import FusionParams, Stylizer, image_to_tensor, load_image, tensor_to_image
from stylecore.color import luminance_image
from stylecore.metrics import StyleRatios, structure_score, style_ratios

PAIRS = {
    "cat_zebra": ("content/cat_chelsea.png", "style/texture_zebra.jpg"),
    "astronaut_zebra": ("content/portrait_astronaut.png", "style/texture_zebra.jpg"),
    "cat_starry": ("content/cat_chelsea.png", "style/starry_night_vangogh.jpg"),
    "coffee_wave": ("content/still_life_coffee.png", "style/great_wave_hokusai.jpg"),
}
SETTINGS = {
    "default": FusionParams(),
    "paper": FusionParams.paper(),
    "preserve_color": FusionParams(preserve_color=True),
}


@dataclass(frozen=True)
class Measured:
    """One result's quality and cost."""

    structure: float
    ratios: StyleRatios
    seconds: float
    luma_ratios: StyleRatios | None  # colour-preserving results only


def measure(stylizer: Stylizer, pair: str, params: FusionParams, output_dir: Path | None, name: str) -> Measured:
    """Stylize one shipped pair under `params` and measure the result (saved under `output_dir` if given)."""
    content_path, style_path = PAIRS[pair]
    content = image_to_tensor(load_image(IMAGES / content_path))
    style = image_to_tensor(load_image(IMAGES / style_path))
    result = stylizer(content, style, params)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        tensor_to_image(result.image).save(output_dir / f"{pair}_{name}_{params.size}.png")
    luma = None
    if params.preserve_color:
        luma = style_ratios(stylizer.extractor, luminance_image(result.image), luminance_image(content),
                            luminance_image(style, content))
    return Measured(structure_score(content, result.image), style_ratios(stylizer.extractor, result.image, content,
                                                                          style), result.seconds, luma)


def spread(values: list[float]) -> float:
    """(max - min) / min: how far apart the sizes' values are, relative to the smallest."""
    return (max(values) - min(values)) / min(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=384, help="longest side of the results in the main table")
    parser.add_argument("--pairs", nargs="+", choices=sorted(PAIRS), default=list(PAIRS))
    parser.add_argument("--settings", nargs="*", choices=sorted(SETTINGS), default=list(SETTINGS),
                        help="settings of the main table (none: only the size table)")
    parser.add_argument("--sizes", nargs="*", type=int, default=[], help="sizes of the default's size table")
    parser.add_argument("--size-pairs", nargs="+", choices=sorted(PAIRS), help="pairs of the size table "
                        "(default: --pairs)")
    parser.add_argument("--levels", type=int, default=FusionParams().levels)
    parser.add_argument("--iterations", type=int, default=FusionParams().iterations, help="steps per level")
    parser.add_argument("--output-dir", type=Path, help="save every result here, to look at")
    args = parser.parse_args()
    pyramid = {"levels": args.levels, "iterations": args.iterations}

    print_machine()
    stylizer = Stylizer("caffe", "auto")
    defaults: dict[tuple[str, int], Measured] = {}  # the main table's default results, reused by the size table
    if args.settings:
        rows = []
        for pair in args.pairs:
            for name in args.settings:
                params = replace(SETTINGS[name], size=args.size, **pyramid)
                found = measure(stylizer, pair, params, args.output_dir, name)
                if name == "default":
                    defaults[pair, args.size] = found
                luma = (f"{found.luma_ratios.gram:.3f} / {found.luma_ratios.mrf:.3f}"
                        if found.luma_ratios is not None else "")
                rows.append([pair, name, f"{found.structure:.2f}", f"{found.ratios.gram:.3f}",
                             f"{found.ratios.mrf:.2f}", f"{found.seconds:.0f}", luma])
                print(f"done: {rows[-1]} (load {load_average()})", flush=True)
        print(f"\n{args.size} px, {args.levels} levels x {args.iterations} steps, seed 0; "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads; load at the end {load_average()}")
        print_table(["pair", "setting", "structure", "Gram ratio", "MRF ratio", "seconds",
                     "luma Gram / MRF ratio"], rows)
    if args.sizes:
        size_rows = []
        for pair in args.size_pairs or args.pairs:
            per_size = []
            for size in args.sizes:
                found = defaults.get((pair, size)) or measure(
                    stylizer, pair, replace(FusionParams(), size=size, **pyramid), args.output_dir, "default")
                per_size.append(found)
                size_rows.append([pair, str(size), f"{found.structure:.2f}", f"{found.ratios.gram:.3f}",
                                  f"{found.ratios.mrf:.2f}", f"{found.seconds:.0f}"])
                print(f"done: {size_rows[-1]} (load {load_average()})", flush=True)
            size_rows.append([pair, "spread", f"{spread([m.structure for m in per_size]):.0%}",
                              f"{spread([m.ratios.gram for m in per_size]):.0%}",
                              f"{spread([m.ratios.mrf for m in per_size]):.0%}", ""])
        print(f"\nthe default at each size, {args.levels} levels x {args.iterations} steps; "
              f"spread = (max - min) / min; load at the end {load_average()}")
        print_table(["pair", "size", "structure", "Gram ratio", "MRF ratio", "seconds"], size_rows)


if __name__ == "__main__":
    main()
