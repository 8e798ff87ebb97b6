"""`stylebatch submit`: a run with a progress bar, a summary, and an exit code that tells the truth."""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from pipeline.batch.runner import RunConfig, RunSummary, ValidationFailed, invalid_lines, run
from pipeline.cli.console import console, out, progress_bar

EXIT_OK, EXIT_FAILED_ROWS, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


def submit(config: RunConfig) -> int:
    """Run `config` with live progress; print a summary; return the process exit code."""
    console.print(f"manifest [bold]{escape(str(config.manifest))}[/] -> output "
                  f"[bold]{escape(str(config.output))}[/], results [bold]{escape(str(config.results))}[/]",
                  highlight=False)
    bar = progress_bar("rate", counts=True)
    task = bar.add_task("rows", total=None, rate="")

    def on_progress(summary: RunSummary, result: dict[str, Any] | None) -> None:
        bar.start()
        counts = summary.counts
        minutes = summary.elapsed / 60
        bar.update(task, total=summary.total, completed=summary.done,
                   description=f"ok {counts['ok']}  skipped {counts['skipped']}  failed {counts['failed']}",
                   rate=f"{counts['ok'] / minutes:.1f} rows/min" if minutes > 0 and counts["ok"] else "")

    def on_status(message: str) -> None:
        console.print(escape(message), highlight=False)

    try:
        summary = run(config, on_progress, on_status)
    except ValidationFailed as failed:
        on_status("\n".join(invalid_lines(failed.summary)))
        console.print(f"[bold red]--strict: {failed.summary.invalid_count} invalid row(s); nothing was run[/]")
        return EXIT_INVALID
    finally:
        bar.stop()
    if summary.total == 0 and not summary.interrupted:
        out.print(f"{escape(str(config.manifest))} has no rows: nothing to do")
        return EXIT_OK
    _print_summary(summary)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if summary.succeeded else EXIT_FAILED_ROWS


def _print_summary(summary: RunSummary) -> None:
    counts = summary.counts
    minutes = summary.elapsed / 60
    rate = counts["ok"] / minutes if minutes > 0 else 0.0
    for failure in summary.failures:
        out.print(f"[red]failed[/] {escape(failure)}", highlight=False)
    hidden = counts["failed"] - len(summary.failures)
    if hidden > 0:
        out.print(f"... and {hidden} more failed row(s); see `stylebatch status`")
    state = {"interrupted": "[bold yellow]interrupted[/]", "stopped": "[bold red]stopped[/]"}.get(
        summary.outcome, "[bold]done[/]")
    out.print(f"{state}: run {summary.run_id}: {counts['ok']} ok, {counts['skipped']} skipped, "
                  f"{counts['failed']} failed of {summary.total} rows in {summary.elapsed:.1f} s "
                  f"({rate:.2f} rows/min)", highlight=False)
    if summary.worse_than_start:
        out.print(f"[yellow]warning:[/] {summary.worse_than_start} ok row(s) ended with a higher loss than their "
                  "finest level started at (column worse_than_start in the results table)", highlight=False)
    if summary.results_file:
        out.print(f"results: {escape(str(summary.results_file))}", highlight=False)
    if summary.stopped:
        out.print(f"[bold red]stopped:[/] {escape(summary.stopped)}", highlight=False)
    if summary.interrupted or summary.stopped:
        out.print("finished rows are kept; run the same command again to continue")
