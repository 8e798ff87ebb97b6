"""`stylebatch compare`: the paper's comparisons for one content/style pair, on one sheet.

Top row: content, style, global only (a2 = 0, Gatys), local only (a1 = 0, CNNMRF), the
fusion at stylebatch's defaults (Figures 1 and 2) and the fusion at the paper's own settings
(`FusionParams.paper()`); bottom row: the style-strength sweep (both style weights scaled).
Every tile is measured with `stylecore.metrics.distances` in the layers of the sheet's base
settings (the paper's tile too, whose own content term reads another layer): Gram and MRF
distance to the style, content distance, comparable across tiles. One Stylizer (one VGG-19)
serves every tile; a parameter set that appears twice (the fusion and the sweep's strength 1)
is synthesised once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from rich.progress import Progress, TaskID

from pipeline.batch.columns import preset_settings
from pipeline.reports.compare_sheet import SheetText, Tile, render
from pipeline.reports.drawing import encode_sheet
from pipeline.storage.store import Storage, parse_location
from stylecore import FusionParams, ImageTooSmallError, Stylizer, image_to_tensor, load_image, plan_levels
from stylecore.files import write_atomically
from stylecore.images import fit_long_side, resize
from stylecore.metrics import Distances, distances
from stylecore.progress import ProgressCallback, SynthesisProgress


@dataclass(frozen=True)
class Variant:
    """One tile to synthesise: a label and the parameters that make it."""

    label: str
    params: FusionParams


@dataclass(frozen=True)
class ComparisonSheet:
    """What `compare_files` made: every tile's record and the sheet's size, time and device."""

    records: list[dict[str, Any]]  # per tile: label, alphas, distances, seconds and pixel box
    width: int
    height: int
    syntheses: int
    seconds: float
    device: str


def method_variants(base: FusionParams) -> list[Variant]:
    """Global only, local only and the fusion at base's weights (Figures 1 and 2), and the fusion at
    the paper's settings with base's size, pyramid, iterations, seed and matching."""
    return [Variant("global only (a2 = 0)", replace(base, alpha_local=0.0)),
            Variant("local only (a1 = 0)", replace(base, alpha_global=0.0)),
            Variant("fusion (default)", base),
            Variant("paper's settings", base.with_overrides(**preset_settings("paper")))]


def strength_variants(base: FusionParams, strengths: Sequence[float]) -> list[Variant]:
    """The style-strength sweep: both style weights scaled against the content weight."""
    return [Variant(f"strength {strength:g}", replace(base, style_strength=strength)) for strength in strengths]


class Comparison:
    """Runs variants on one content/style pair with one Stylizer, measuring every result."""

    def __init__(self, stylizer: Stylizer, content: Image.Image, style: Image.Image,
                 yardstick: FusionParams) -> None:
        """`yardstick`: the settings whose layers every tile is measured in."""
        self.stylizer, self.yardstick = stylizer, yardstick
        self.content = image_to_tensor(content)
        self.style = image_to_tensor(style)
        self._done: dict[FusionParams, Tile] = {}

    def measure(self, image: torch.Tensor) -> Distances:
        return distances(self.stylizer.extractor, image, self.content, self.style, self.yardstick)

    def input_tiles(self, like: torch.Tensor) -> list[Tile]:
        """The content and the style at the results' scale, measured like the results: the baselines
        "no style at all" (content) and "all style, no content" (style)."""
        height, width = like.shape[-2:]
        content = resize(self.content, height, width).clamp(0, 1)
        style_size = fit_long_side(self.style.shape[-2], self.style.shape[-1], max(height, width))
        style = resize(self.style, *style_size).clamp(0, 1)
        return [Tile("content", content, self.measure(content), None, 0.0),
                Tile("style", style, self.measure(style), None, 0.0)]

    def run(self, variants: Sequence[Variant], progress: Progress | None = None) -> list[Tile]:
        """One tile per variant, in order; parameter sets already synthesised are reused.

        `progress` gets a task over every evaluation of every synthesis, with a `losses` field.
        """
        if progress is None:
            progress = Progress(disable=True)
        unique = list(dict.fromkeys(variant.params for variant in variants if variant.params not in self._done))
        task = progress.add_task("comparison", total=sum(params.levels * params.iterations for params in unique),
                                 losses="")
        evaluations_before = 0
        for number, params in enumerate(unique, start=1):
            label = next(variant.label for variant in variants if variant.params == params)
            report = _reporter(progress, task, f"{label} ({number}/{len(unique)})", evaluations_before)
            started = time.perf_counter()
            result = self.stylizer(self.content, self.style, params, callback=report)
            self._done[params] = Tile(label, result.image, self.measure(result.image), params,
                                      time.perf_counter() - started)
            evaluations_before += params.levels * params.iterations
        return [replace(self._done[variant.params], label=variant.label) for variant in variants]


def _reporter(progress: Progress, task: TaskID, title: str, evaluations_before: int) -> ProgressCallback:
    """A synthesis callback that moves the sheet's progress bar."""

    def report(step: SynthesisProgress) -> None:
        progress.update(task, completed=evaluations_before + step.fraction * step.levels * step.iterations,
                        description=f"{title} level {step.level}/{step.levels} "
                                    f"iter {step.iteration}/{step.iterations}",
                        losses=f"total {step.losses.total:.3e}")

    return report


def load_input(text: str, storage: Storage) -> tuple[Image.Image, str]:
    """Decode a local or s3:// image; returns it and its file name."""
    location = parse_location(text)
    return load_image(storage.read_bytes(location), name=str(location)), location.name


def compare_files(content: str, style: str, output: Path, base: FusionParams, *, strengths: Sequence[float],
                  tile_width: int | None, device: str, weights: str, s3_endpoint: str | None, colors: int = 0,
                  progress: Progress | None = None) -> ComparisonSheet:
    """Synthesise every tile and write the sheet to `output` (replacing any file there).

    `base` holds the weights of the fusion and every setting the tiles share; `strengths` the
    sweep row's style strengths (may be empty); `colors` makes a PNG a palette image (see
    `pipeline.reports.drawing.encode_sheet`); `progress`: see `Comparison.run`.
    """
    if base.size is None:
        raise ValueError("compare needs an output size")
    storage = Storage(s3_endpoint)
    content_image, content_name = load_input(content, storage)
    style_image, style_name = load_input(style, storage)
    try:
        plan_levels((content_image.height, content_image.width), (style_image.height, style_image.width), base)
    except ImageTooSmallError as error:
        raise error.naming(content, style) from None
    stylizer = Stylizer(weights, device)
    comparison = Comparison(stylizer, content_image, style_image, yardstick=base)
    methods, sweeps = method_variants(base), strength_variants(base, strengths)
    started = time.perf_counter()
    tiles = comparison.run([*methods, *sweeps], progress)
    method_tiles, sweep_tiles = tiles[: len(methods)], tiles[len(methods):]
    inputs = comparison.input_tiles(like=method_tiles[-1].image)
    unique = len({tile.params for tile in tiles})
    text = SheetText(
        title=f"{content_name} + {style_name}: global vs local vs fusion (paper Figs. 1, 2), default vs the paper"
              + (" and the style-strength sweep" if strengths else ""),
        row_headings=("inputs, each loss alone, the fusion at the defaults and at the paper's settings",
                      "style strength: both style weights times S"),
        legend=legend(base, method_tiles[-1].image, f"{weights} VGG-19 on {stylizer.device}", unique,
                      time.perf_counter() - started))
    sheet, metadata = render([*inputs, *method_tiles], sweep_tiles, text, tile_width or min(base.size, 256),
                             {"content": content_name, "style": style_name})
    write_atomically(output, encode_sheet(sheet, output.name, metadata, colors))
    return ComparisonSheet(metadata["tiles"], sheet.width, sheet.height, unique, time.perf_counter() - started,
                           str(stylizer.device))


def legend(base: FusionParams, result: torch.Tensor, network: str, syntheses: int, seconds: float) -> list[str]:
    """The settings every tile shares, written beside the tiles so the sheet explains itself."""
    height, width = result.shape[-2:]
    every = base.matching.match_every
    matching = "exact patch matching (match_every 1)" if every == 1 else f"approximate matching (match_every {every})"
    paper = FusionParams.paper()
    return [f"{width}x{height} px, {base.levels} levels x {base.iterations} iters", matching,
            f"default: local term a {base.local_normalization} over patches, {base.init} init",
            f"paper: local term a {paper.local_normalization} over patches, {paper.init} init",
            f"content layer: {base.content_layer} (paper: {paper.content_layer})",
            f"style weights x{base.size_factor(max(height, width)):.2f} at {max(height, width)} px (paper x1)",
            f"seed {base.seed}, {network}", f"{syntheses} syntheses in {seconds / 60:.1f} min",
            "distances: lower = closer"]


def distance_table(records: list[dict[str, Any]]) -> str:
    """The tiles' alphas and distances as a Markdown table: whole numbers at any terminal width, and
    ready to paste into documentation."""
    lines = ["| tile | a1 | a2 | a3 | strength | Gram | MRF | content | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for record in records:
        alphas = [("" if record[name] is None else f"{record[name]:g}")
                  for name in ("alpha_global", "alpha_local", "alpha_content", "style_strength")]
        cells = [record["label"], *alphas, f"{record['gram']:.4g}", f"{record['mrf']:.4g}",
                 f"{record['content']:.4g}", f"{record['seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
