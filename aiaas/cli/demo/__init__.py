"""``aiaas demo`` (and ``make demo``): the main job end to end on this machine.

digits → Kafka → 2 trainers + aggregator (sync) → ONNX → registry → 2 inference workers + the
HTTP bridge → the test split over HTTP (sync and signed async callbacks) and the Kafka client →
a summary table, plots in ``demo-output/``, and one JSON line last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    out: Annotated[Path, typer.Option(help="folder for plots and the summary")] = Path("demo-output"),
    epochs: Annotated[float, typer.Option(help="epoch budget (the 0.97 target usually stops it first)")] = 40,
    port: Annotated[int, typer.Option(help="bridge HTTP port (0: a free one)")] = 0,
) -> None:
    """Train digits over Kafka, serve it, call it over HTTP and Kafka, report; exit 1 on any failure."""
    from aiaas.cli.demo.pipeline import DemoPlan, run_demo
    from aiaas.streams.runtime import run, setup_logging

    setup_logging("WARNING")
    ok = run(run_demo(DemoPlan(out=out, epochs=epochs, port=port)))
    if not ok:
        raise typer.Exit(1)


def register(app: typer.Typer, worker: typer.Typer) -> None:
    app.command("demo")(demo)
