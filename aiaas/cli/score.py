"""``aiaas score`` (and ``aiaas worker score``): score a topic into another with a registered model,
exactly once; flags in agents/inference/scoring_cli.py, plus ``--wait``: without it an unknown model
name exits with an error instead of waiting for a version to appear."""

from __future__ import annotations

import typer

from aiaas.agents.inference.scoring_cli import score
from aiaas.cli.modelcheck import checked_worker


def register(app: typer.Typer, worker: typer.Typer) -> None:
    """Add ``aiaas score`` and ``aiaas worker score`` (the same long-running worker)."""
    app.command("score")(checked_worker(score))
    worker.command("score")(checked_worker(score))
