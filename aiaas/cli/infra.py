"""``aiaas infra up|down|status``: the project's own Kafka broker and Redis scripts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Local Kafka broker and Redis.")
INFRA = Path(__file__).resolve().parent.parent / "infra"


def _run(script: str) -> None:
    rc = subprocess.call([str(INFRA / script)])
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
