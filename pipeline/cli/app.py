"""The `stylebatch` command line: thin wrappers over stylecore, the batch engine and the reports.

Each command parses its options, imports what it needs (so that `--help` stays fast) and
runs inside `reported_errors`, the one error path (see `pipeline.cli.errors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.console import console
from pipeline.cli.errors import fail, reported_errors, set_debug
from stylecore.params import FusionParams

app = typer.Typer(help="Neural style transfer at dataset scale (global + local fusion loss on VGG-19).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)
DEFAULTS = FusionParams()

# The options several commands share, defined once.
S3Endpoint = Annotated[str | None, typer.Option("--s3-endpoint", envvar="AWS_ENDPOINT_URL",
                                                help="S3-compatible endpoint URL.")]
Paper = Annotated[bool, typer.Option("--paper", help="Start from the paper's exact settings (a1 20, a2 1e-4 on a "
                                     "summed local term, a3 20 on relu3_1, noise init, the same weights at every "
                                     "size) instead of stylebatch's defaults; the other options still apply. "
                                     "See the README, \"Defaults\".")]
StyleStrength = Annotated[float | None, typer.Option("--style-strength", min=0, help="Both style weights times S "
                                                     "against the content weight: 0.5 = less style, 2 = more "
                                                     "\\[default: 1].")]
PreserveColor = Annotated[bool | None, typer.Option("--preserve-color", help="Keep the content's colours: stylize "
                                                    "the luminance only (Gatys et al. 2017).")]


def starting_params(paper: bool, **overrides: object) -> FusionParams:
    """The defaults (or, with `paper`, the paper's settings) with the options given; None = not given."""
    return (FusionParams.paper() if paper else DEFAULTS).with_overrides(**overrides)


@app.callback()
def main_options(
    context: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="On an error, print its traceback (credentials masked) "
                               "instead of one line."),
) -> None:
    """stylebatch: stylize images with the fusion loss, one at a time or by the million."""
    set_debug(context, debug)


@app.command()
def stylize(
    context: typer.Context,
    content: Path = typer.Argument(..., help="Content image file."),
    style: Path = typer.Argument(..., help="Style image file."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the result (format from the extension)."),
    size: int = typer.Option(DEFAULTS.size, min=1, help="Longest side of the output, pixels."),
    levels: int = typer.Option(DEFAULTS.levels, min=1, help="Pyramid levels, each half the next."),
    iters: int = typer.Option(DEFAULTS.iterations, min=1, help="L-BFGS steps per level."),
    alpha_global: float = typer.Option(None, min=0, help="Weight of the global (Gram) style loss "
                                       f"\\[default: {DEFAULTS.alpha_global:g}]."),
    alpha_local: float = typer.Option(None, min=0, help="Weight of the local (MRF) style loss "
                                      f"\\[default: {DEFAULTS.alpha_local:g}]."),
    alpha_content: float = typer.Option(None, min=0, help="Weight of the content loss "
                                        f"\\[default: {DEFAULTS.alpha_content:g}]."),
    style_strength: StyleStrength = None,
    preserve_color: PreserveColor = None,
    paper: Paper = False,
    tv_weight: float = typer.Option(DEFAULTS.tv_weight, min=0, help="Total-variation weight (CNNMRF used 1e-3)."),
    match_every: int = typer.Option(DEFAULTS.matching.match_every, min=1,
                                    help="Refresh local-loss matches every K evaluations (1 = exact)."),
    seed: int = typer.Option(DEFAULTS.seed, help="Seed of the random initialisation."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    weights: str = typer.Option("caffe", help="caffe (offline), torchvision (downloads) or a .pth path."),
    force: bool = typer.Option(False, "--force", help="Overwrite OUTPUT if it exists."),
) -> None:
    """Stylize one CONTENT image with one STYLE image."""
    with reported_errors(context):
        from pipeline.cli.stylize import stylize_file

        params = starting_params(paper, alpha_global=alpha_global, alpha_local=alpha_local,
                                 alpha_content=alpha_content, style_strength=style_strength,
                                 preserve_color=preserve_color, tv_weight=tv_weight, levels=levels, size=size,
                                 iterations=iters, match_every=match_every, seed=seed)
        stylize_file(content, style, output, params, device=device, weights=weights, force=force)


@app.command()
def submit(
    context: typer.Context,
    manifest: str = typer.Argument(..., help="Manifest: a .csv or .parquet file, local or s3://."),
    output: str = typer.Option(None, "--output", help="Folder or s3:// prefix for the images "
                               "\\[default: out/<manifest name> in the current folder]."),
    results: str = typer.Option(None, "--results", help="Folder or s3:// prefix of the Parquet results "
                                "\\[default: <output>/_results]."),
    address: str = typer.Option(None, "--address", help="Ray cluster to use (auto, ray://host:10001, or "
                                "RAY_ADDRESS); without it a local Ray is started and stopped."),
    workers: int = typer.Option(None, "--workers", min=1, help="At most this many worker actors \\[default: as "
                                "many as the cluster can grow to (its autoscaler's node types)]."),
    threads: int = typer.Option(None, "--threads", min=1, help="Torch threads per worker."),
    gpus_per_worker: float = typer.Option(None, "--gpus-per-worker", min=0, max=1,
                                          help="Fraction of a GPU per worker: 0.25 runs four syntheses on each "
                                          "GPU \\[default: 1 where the cluster has GPUs]."),
    device: str = typer.Option("auto", "--device", help="What workers compute on: auto (CUDA where a worker "
                               "holds a GPU), cpu or cuda."),
    wait_for_workers: float = typer.Option(15, "--wait-for-workers", min=0, help="Minutes to wait "
                                           "for a first worker (nodes booting) before giving up."),
    size: int = typer.Option(None, "--size", min=1, help=f"Default longest side \\[default: {DEFAULTS.size}]."),
    levels: int = typer.Option(None, "--levels", min=1, help=f"Default pyramid levels \\[default: {DEFAULTS.levels}]."),
    iters: int = typer.Option(None, "--iters", min=1,
                              help=f"Default iterations per level \\[default: {DEFAULTS.iterations}]."),
    seed: int = typer.Option(None, "--seed", help=f"Default seed \\[default: {DEFAULTS.seed}]."),
    alpha_global: float = typer.Option(None, "--alpha-global", min=0,
                                       help=f"Default global weight \\[default: {DEFAULTS.alpha_global:g}]."),
    alpha_local: float = typer.Option(None, "--alpha-local", min=0,
                                      help=f"Default local weight \\[default: {DEFAULTS.alpha_local:g}]."),
    alpha_content: float = typer.Option(None, "--alpha-content", min=0,
                                        help=f"Default content weight \\[default: {DEFAULTS.alpha_content:g}]."),
    style_strength: StyleStrength = None,
    preserve_color: PreserveColor = None,
    paper: Paper = False,
    match_every: int = typer.Option(None, "--match-every", min=1,
                                    help="Refresh local-loss matches every K evaluations (1 = exact)."),
    weights: str = typer.Option("caffe", help="caffe (offline), torchvision (downloads) or a .pth path "
                                "that exists on every worker."),
    retries: int = typer.Option(2, "--retries", min=0, help="Retries of a row whose worker process died."),
    s3_endpoint: S3Endpoint = None,
    force: bool = typer.Option(False, "--force", help="Redo rows whose output exists, overwriting it."),
    strict: bool = typer.Option(False, "--strict", help="Run nothing if any row is invalid."),
    retry_window: float = typer.Option(120.0, "--retry-window", min=0,
                                       help="Seconds to keep retrying a storage operation that fails "
                                            "transiently (connection errors, 5xx, throttling)."),
) -> None:
    """Stylize every row of MANIFEST on Ray; record each row in a Parquet results table."""
    from pipeline.batch.planning import WorkersUnavailable
    from pipeline.storage.errors import StorageError

    # Exit 2: the manifest, the locations, the options or the cluster cannot be used as given.
    with reported_errors(context, usage=(ValueError, StorageError, WorkersUnavailable)):
        from pipeline.batch.runner import RunConfig
        from pipeline.cli.submit import submit as run_submit
        from pipeline.storage.store import parse_location

        manifest_location = parse_location(manifest)
        output_location = parse_location(output or f"out/{Path(manifest_location.name).stem}")
        results_location = parse_location(results) if results else output_location.child("_results")
        defaults = starting_params(paper, size=size, levels=levels, iterations=iters, seed=seed,
                                   alpha_global=alpha_global, alpha_local=alpha_local, alpha_content=alpha_content,
                                   style_strength=style_strength, preserve_color=preserve_color,
                                   match_every=match_every)
        config = RunConfig(manifest_location, output_location, results_location, defaults, weights, address,
                           workers, threads, retries, force, strict, s3_endpoint, retry_window,
                           gpus_per_worker=gpus_per_worker, device=device, wait_for_workers=wait_for_workers * 60)
        code = run_submit(config)
    raise typer.Exit(code)


@app.command()
def status(
    context: typer.Context,
    results: str = typer.Argument(..., help="Results folder or s3:// prefix (e.g. out/demo/_results)."),
    run_id: str = typer.Option(None, "--run", help="Only this run \\[default: every run]."),
    s3_endpoint: S3Endpoint = None,
) -> None:
    """Summarise a results table: each run's rows by status, how the run ended, and its failures."""
    with reported_errors(context):
        from pipeline.cli.console import out
        from pipeline.reports.status import print_status
        from pipeline.storage.store import parse_location

        found = print_status(out, parse_location(results), run_id, s3_endpoint)
    if not found:
        fail(f"no results found in {results}")


@app.command()
def report(
    context: typer.Context,
    results: str = typer.Argument(..., help="Results folder or s3:// prefix (e.g. out/demo/_results)."),
    output: Path = typer.Option(..., "--output", "-o", help="The HTML page to write (replaced if it exists)."),
    png: Path = typer.Option(None, "--png", help="Also write a contact sheet image (first 200 rows)."),
    run_id: str = typer.Option(None, "--run", help="Only this run \\[default: every run]."),
    thumb: int = typer.Option(160, min=16, max=1024, help="Longest side of the result thumbnails, pixels."),
    s3_endpoint: S3Endpoint = None,
) -> None:
    """One card per results row (inputs, result, parameters, losses, time, errors) in a self-contained page."""
    with reported_errors(context):
        from pipeline.cli.console import progress_bar
        from pipeline.reports.report import write_report
        from pipeline.storage.store import parse_location

        with progress_bar(counts=True, transient=True) as bar:
            counts = write_report(parse_location(results), output, png=png, run_id=run_id, s3_endpoint=s3_endpoint,
                                  thumb_size=thumb, progress=bar)
    summary = ", ".join(f"{count} {status}" for status, count in counts.items())
    console.print(f"wrote [bold]{output}[/] ({summary})" + (f" and [bold]{png}[/]" if png else ""),
                  highlight=False)


@app.command()
def compare(
    context: typer.Context,
    content: str = typer.Argument(..., help="Content image: a file or s3:// URI."),
    style: str = typer.Argument(..., help="Style image: a file or s3:// URI."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the sheet (.png keeps the numbers "
                                "as metadata)."),
    size: int = typer.Option(256, min=1, help="Longest side of every result, pixels."),
    levels: int = typer.Option(DEFAULTS.levels, min=1, help="Pyramid levels, each half the next."),
    iters: int = typer.Option(DEFAULTS.iterations, min=1, help="L-BFGS iterations per level."),
    alpha_global: float = typer.Option(None, "--alpha-global", min=0,
                                       help=f"a1 of the default fusion \\[default: {DEFAULTS.alpha_global:g}]."),
    alpha_local: float = typer.Option(None, "--alpha-local", min=0,
                                      help=f"a2 of the default fusion \\[default: {DEFAULTS.alpha_local:g}]."),
    strengths: str = typer.Option("0.25,0.5,1,2,4", "--strengths", help="Comma-separated style strengths of the "
                                  "sweep row (both style weights times S); empty for none."),
    match_every: int = typer.Option(1, min=1, help="Refresh local-loss matches every K evaluations "
                                    "(1 = the paper's exact matching)."),
    seed: int = typer.Option(DEFAULTS.seed, help="Seed of the random initialisation."),
    tile: int = typer.Option(None, min=8, help="Longest side of each tile on the sheet \\[default: min(size, 256)]."),
    colors: int = typer.Option(0, min=0, max=256, help="Store a PNG sheet with this many colours (dithered; "
                               "256 is about a third of the size); 0 = full colour."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    weights: str = typer.Option("caffe", help="caffe (offline), torchvision (downloads) or a .pth path."),
    s3_endpoint: S3Endpoint = None,
    force: bool = typer.Option(False, "--force", help="Overwrite OUTPUT if it exists."),
) -> None:
    """Global only, local only, the fusion at the defaults and at the paper's settings, and a style-strength
    sweep, side by side with distances on every tile."""
    with reported_errors(context):
        from pipeline.cli.console import out, progress_bar
        from pipeline.cli.stylize import check_output_path
        from pipeline.reports.compare import compare_files, distance_table

        strength_values = _numbers(strengths, "--strengths")
        base = DEFAULTS.with_overrides(size=size, levels=levels, iterations=iters, match_every=match_every, seed=seed,
                                       alpha_global=alpha_global, alpha_local=alpha_local)
        check_output_path(output, force)
        with progress_bar("losses") as bar:
            sheet = compare_files(content, style, output, base, strengths=strength_values, tile_width=tile,
                                  device=device, weights=weights, s3_endpoint=s3_endpoint, colors=colors,
                                  progress=bar)
    out.print(distance_table(sheet.records), markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote [bold]{output}[/] ({sheet.width}x{sheet.height}) with {sheet.syntheses} syntheses in "
                  f"{sheet.seconds:.0f} s on {sheet.device}", highlight=False)


def _numbers(text: str, option: str) -> list[float]:
    """Comma-separated numbers >= 0; ValueError naming the option and the bad value."""
    values = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            value = float(item)
        except ValueError:
            value = float("nan")
        if not value >= 0:
            raise ValueError(f"{option}: {item!r} is not a number >= 0")
        values.append(value)
    return values

