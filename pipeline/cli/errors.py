"""One error path for every command: one redacted line for the user, the traceback on request.

A command runs its body inside `reported_errors`. An error the commands foresee (bad
options or inputs, files, storage, weights, images: `FORESEEABLE`) prints `error: <its
message>`; anything else prints its type and message and how to see more. Either way the
text is redacted (`pipeline.storage.secrets.redact`) and no traceback is shown, unless the
global `--debug` option asked for it: then the traceback is printed instead, redacted too.
Exit codes: 2 for the errors a command declares `usage` errors (its options or inputs
cannot be used as given), 1 for every other failure.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from typing import NoReturn

import typer
from rich.markup import escape

from pipeline.cli.console import console

# ImageError and ManifestError are ValueErrors, WeightsError a RuntimeError, ConnectionError an
# OSError; pipeline.storage.StorageError is added when it is imported (see _foreseeable).
FORESEEABLE: tuple[type[Exception], ...] = (ValueError, OSError, RuntimeError)
EXIT_FAILED, EXIT_USAGE = 1, 2
_DEBUG = "stylebatch.debug"


def set_debug(context: typer.Context, debug: bool) -> None:
    """Record the global --debug option for every command run under `context` (the app callback's)."""
    context.meta[_DEBUG] = debug


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print `message` as an error and exit with `code`."""
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


@contextlib.contextmanager
def reported_errors(context: typer.Context, *, usage: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Run a command's body, turning any exception it raises into a message and an exit code.

    `context`: the command's; `usage`: the exception types that mean the options or inputs
    cannot be used (foreseen, exit 2). typer's own exits and usage errors pass through untouched.
    """
    try:
        yield
    except (typer.Exit, typer.Abort, typer.TyperException):
        raise
    except Exception as error:
        from pipeline.storage.secrets import redact

        code = EXIT_USAGE if isinstance(error, usage) else EXIT_FAILED
        if context.meta.get(_DEBUG, False):
            console.print(redact("".join(traceback.format_exception(error))).rstrip(), markup=False,
                          highlight=False)
            raise typer.Exit(code) from None
        if isinstance(error, (*usage, *_foreseeable())):
            fail(redact(str(error)), code)
        fail(redact(f"{type(error).__name__}: {error}") + " (rerun with --debug for the traceback)", code)


def _foreseeable() -> tuple[type[Exception], ...]:
    from pipeline.storage.store import StorageError

    return (*FORESEEABLE, StorageError)
