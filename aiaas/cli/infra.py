"""``aiaas infra up|down|status``: the project's own Kafka broker and Redis scripts.

The scripts ship inside the package (``aiaas/infra``), so these commands work from any directory
after a plain install; what they write (broker data, logs, pid files, the broker's jars) goes to
the state dir, ``AIAAS_STATE_DIR`` (default ``~/.cache/aiaas/state``; docs/operations.md).
"""

from __future__ import annotations

import asyncio

import typer

app = typer.Typer(no_args_is_help=True, help="Local Kafka broker and Redis (state in AIAAS_STATE_DIR).")


def _run(script: str) -> None:
    from aiaas.agents.processes import run_infra
    from aiaas.streams.settings import get_settings

    rc = asyncio.run(run_infra(script, get_settings().state_dir))
    if rc:
        raise typer.Exit(rc)


@app.command()
def up() -> None:
    """Start Kafka (KRaft, single node) and Redis if they are not running."""
    _run("up.sh")


@app.command()
def down() -> None:
    """Stop what `up` started."""
    _run("down.sh")


@app.command()
def status() -> None:
    """Show whether Kafka and Redis are running."""
    _run("status.sh")
