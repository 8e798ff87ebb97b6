"""The `stylebatch` command line: thin wrappers over stylecore and the pipeline."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.console import console, fail
from stylecore.params import FusionParams

app = typer.Typer(help="Neural style transfer at dataset scale (global + local fusion loss on VGG-19).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)
DEFAULTS = FusionParams()


@app.callback()
def main_options() -> None:
    """stylebatch: stylize images with the fusion loss, one at a time or by the million."""


@app.command()
def stylize(
    content: Path = typer.Argument(..., help="Content image file."),
    style: Path = typer.Argument(..., help="Style image file."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the result (format from the extension)."),
    size: int = typer.Option(DEFAULTS.size, min=1, help="Longest side of the output, pixels."),
    levels: int = typer.Option(DEFAULTS.levels, min=1, help="Pyramid levels, each half the next."),
    iters: int = typer.Option(DEFAULTS.iterations, min=1, help="L-BFGS iterations (loss evaluations) per level."),
    alpha_global: float = typer.Option(DEFAULTS.alpha_global, min=0, help="Weight of the global (Gram) style loss."),
    alpha_local: float = typer.Option(DEFAULTS.alpha_local, min=0, help="Weight of the local (MRF) style loss."),
    alpha_content: float = typer.Option(DEFAULTS.alpha_content, min=0, help="Weight of the content loss."),
    tv_weight: float = typer.Option(DEFAULTS.tv_weight, min=0, help="Total-variation weight (CNNMRF used 1e-3)."),
    match_every: int = typer.Option(DEFAULTS.match_every, min=1,
                                    help="Refresh local-loss matches every K evaluations (1 = exact)."),
    seed: int = typer.Option(DEFAULTS.seed, help="Seed of the random initialisation."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    weights: str = typer.Option("caffe", help="caffe (offline), torchvision (downloads) or a .pth path."),
    force: bool = typer.Option(False, "--force", help="Overwrite OUTPUT if it exists."),
) -> None:
    """Stylize one CONTENT image with one STYLE image."""
    from pipeline.single import stylize_file

    params = FusionParams(alpha_global=alpha_global, alpha_local=alpha_local, alpha_content=alpha_content,
                          tv_weight=tv_weight, levels=levels, size=size, iterations=iters,
                          match_every=match_every, seed=seed)
    try:
        stylize_file(content, style, output, params, device=device, weights=weights, force=force)
    except (ValueError, RuntimeError, OSError) as error:
        fail(str(error))
