"""`stylebatch stylize`: one content image, one style image, one output file, with a progress bar."""

from __future__ import annotations

import time
from pathlib import Path

from rich.progress import Progress, TaskID

from pipeline.cli.console import console, progress_bar
from stylecore import FusionParams, ImageTooSmallError, Stylizer, SynthesisProgress, load_image, plan_levels
from stylecore.files import write_atomically
from stylecore.imageio import encode_image, image_format_for
from stylecore.params import REFERENCE_SIZE


def check_output_path(output: Path, force: bool) -> None:
    """Fail before any compute if OUTPUT cannot be written as asked."""
    image_format_for(output.name)
    if output.exists() and not force:
        raise ValueError(f"{output} exists; pass --force to overwrite it")
    if output.is_dir():
        raise ValueError(f"{output} is a directory; give a file name")


def stylize_file(content_path: Path, style_path: Path, output: Path, params: FusionParams, *,
                 device: str, weights: str, force: bool) -> None:
    """Load, check, stylize with a progress bar, save; errors name the file at fault."""
    check_output_path(output, force)
    content = load_image(content_path)
    style = load_image(style_path)
    try:
        plan_levels((content.height, content.width), (style.height, style.width), params)
    except ImageTooSmallError as error:
        raise error.naming(content_path, style_path) from None
    stylizer = Stylizer(weights, device)
    started = time.perf_counter()
    with progress_bar("losses") as bar:
        task = bar.add_task("starting", total=params.levels * params.iterations, losses="")
        result = stylizer(content, style, params, callback=lambda report: _update(bar, task, report))
    write_atomically(output, encode_image(result.to_pil(), output.name))
    height, width = result.image.shape[-2:]
    factor = params.size_factor(max(height, width))
    scaled = (f"; style weights x{factor:.2f} for its size (calibrated at {REFERENCE_SIZE} px)"
              if round(factor, 2) != 1 else "")
    console.print(f"wrote [bold]{output}[/] ({width}x{height}) in {time.perf_counter() - started:.1f} s "
                  f"on {result.device}{scaled}; final loss {result.losses.total:.4g}", highlight=False)


def _update(bar: Progress, task: TaskID, report: SynthesisProgress) -> None:
    losses = report.losses
    bar.update(task, completed=report.fraction * (bar.tasks[task].total or 0),
               description=f"level {report.level}/{report.levels} {report.width}x{report.height} "
                           f"iter {report.iteration}/{report.iterations}",
               losses=f"global {losses.global_:.2e} local {losses.local:.2e} content {losses.content:.2e}")
