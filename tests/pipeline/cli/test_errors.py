"""The one error path of every command: one redacted line, exit 2 for unusable options or inputs
and 1 for failures, and the (redacted) traceback only with `stylebatch --debug`."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from pipeline.cli.errors import reported_errors, set_debug
from tests.pipeline.conftest import stylebatch

KEY_ID = "AKIAABCDEFGHIJKLMNOP"  # shaped like an AWS access key id: always masked


def probe_app() -> typer.Typer:
    """A two-line command on the real error path, raising whatever the test names."""
    app = typer.Typer()

    @app.callback()
    def main(context: typer.Context, debug: bool = typer.Option(False, "--debug")) -> None:
        set_debug(context, debug)

    @app.command()
    def fail(context: typer.Context, kind: str) -> None:
        errors = {"unexpected": ZeroDivisionError(f"divided by zero near {KEY_ID}"),
                  "foreseeable": OSError(f"disk full writing s3://bucket/a?X-Amz-Credential={KEY_ID}"),
                  "usage": LookupError("the manifest names no column 'content'"),
                  "exit": typer.Exit(3), "bad-option": typer.BadParameter("not like that")}
        with reported_errors(context, usage=(LookupError,)):
            raise errors[kind]

    return app


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(probe_app(), list(args))
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize(("kind", "code", "message"), [
    ("unexpected", 1,
     "error: ZeroDivisionError: divided by zero near <redacted> (rerun with --debug for the traceback)"),
    ("foreseeable", 1, "error: disk full writing s3://bucket/a?X-Amz-Credential=<redacted>"),
    ("usage", 2, "error: the manifest names no column 'content'"),
])
def test_an_error_is_one_redacted_line_and_an_exit_code(kind, code, message):
    exit_code, output = run("fail", kind)
    assert exit_code == code and message in output, output
    assert output.count("error:") == 1 and "Traceback" not in output and KEY_ID not in output


def test_debug_shows_the_traceback_instead_still_redacted():
    exit_code, output = run("--debug", "fail", "unexpected")
    assert exit_code == 1 and "Traceback (most recent call last)" in output and "ZeroDivisionError" in output
    assert KEY_ID not in output and "error:" not in output


def test_typers_own_exits_and_usage_errors_pass_through():
    assert run("fail", "exit")[0] == 3
    exit_code, output = run("fail", "bad-option")
    assert exit_code == 2 and "not like that" in output and "rerun with --debug" not in output


def test_the_real_command_line_takes_debug_before_any_command(tmp_path):
    missing = str(tmp_path / "missing.png")
    plain = stylebatch("stylize", missing, missing, "-o", str(tmp_path / "out.png"))
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert f"error: {missing}: file not found" in " ".join(plain.stderr.split())
    debug = stylebatch("--debug", "stylize", missing, missing, "-o", str(tmp_path / "out.png"))
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert "ImageError" in debug.stderr and "error:" not in debug.stderr
