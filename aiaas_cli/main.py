"""``aiaas``: one command for infrastructure, schemas, data, training, serving and workers.

Each area keeps its commands in its own module and adds them in ``register``; this file only
assembles them, so areas never edit each other's command code.
"""

from __future__ import annotations

import typer

from aiaas_cli import bridge, data, demo, infra, ops, schemas_cmd, serving, training

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(infra.app, name="infra")
app.add_typer(schemas_cmd.app, name="schemas")
worker = typer.Typer(no_args_is_help=True, help="Run one agent process.")
app.add_typer(worker, name="worker")

for area in (data, training, serving, bridge, ops, demo):
    area.register(app, worker)


if __name__ == "__main__":
    app()
