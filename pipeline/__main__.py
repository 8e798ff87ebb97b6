"""`python -m pipeline` is the `stylebatch` command."""

from pipeline.cli import app

app(prog_name="stylebatch")
