"""Terminal output shared by the commands: progress and errors on stderr, results on stdout."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `message` as an error and exit with `code`."""
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)
