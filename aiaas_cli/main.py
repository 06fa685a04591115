"""``aiaas``: one command for infrastructure, schemas, data, training, serving and workers.

Each sub-area registers its own Typer group in its module; this file only assembles them.
"""

from __future__ import annotations

import typer

from aiaas_cli import infra, schemas_cmd

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(infra.app, name="infra")
app.add_typer(schemas_cmd.app, name="schemas")

# Groups added by other areas (training, serving, bridge) register here as they land.
worker = typer.Typer(no_args_is_help=True, help="Run one agent process.")
app.add_typer(worker, name="worker")


if __name__ == "__main__":
    app()
