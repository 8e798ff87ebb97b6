"""Terminal output shared by the commands: progress and errors on stderr, results on stdout.

Only the command line writes to the terminal. Reports that take a while accept a rich
`Progress` (made by `progress_bar`) or a `Console` from here; they never import this module.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)
out = Console()


def progress_bar(*fields: str, counts: bool = False, transient: bool = False) -> Progress:
    """A progress bar on stderr: description, bar, `done/total` if `counts`, the tasks' `fields`
    (each task must set them), elapsed time and eta; `transient` erases it when it stops."""
    columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn()]
    if counts:
        columns.append(MofNCompleteColumn())
    columns += [*(TextColumn(f"{{task.fields[{field}]}}") for field in fields), TimeElapsedColumn(),
                TextColumn("eta"), TimeRemainingColumn()]
    return Progress(*columns, console=console, transient=transient)
