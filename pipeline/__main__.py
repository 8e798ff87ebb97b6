"""`python -m pipeline` is the `stylebatch` command."""

from pipeline.cli.app import app

app(prog_name="stylebatch")
