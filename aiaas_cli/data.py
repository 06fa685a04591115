"""CLI commands of the data area (filled in by that area; see main.py for how they are assembled)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, worker: typer.Typer) -> None:
    """Add this area's commands to the top-level `app` and its agents to `aiaas worker`."""
