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
    job_id: Annotated[str | None, typer.Option(
        help="the training job's id (default demo-<time>); under access control, acl apply's --job")] = None,
    trainers: Annotated[int, typer.Option(min=1, help="trainer processes")] = 2,
    workers: Annotated[int, typer.Option(min=1, help="inference worker processes")] = 2,
    rows: Annotated[int | None, typer.Option(min=3, help="call with only the first ROWS test rows")] = None,
) -> None:
    """Train digits over Kafka, serve it, call it over HTTP and Kafka, report; exit 1 on any failure.

    With access control on (AIAAS_ROLE_USERS=true, docs/operations.md "Access control") every
    process runs as its role's user and the Kafka caller as tenant demo: run 'aiaas acl apply
    --tenant demo=digits --job JOB' first and pass '--job-id JOB'."""
    from aiaas.cli.demo.pipeline import DemoPlan, run_demo
    from aiaas.streams.runtime import run, setup_logging

    setup_logging("WARNING")
    plan = DemoPlan(out=out, epochs=epochs, port=port, trainers=trainers, workers=workers, rows=rows)
    if job_id:
        plan.job_id = job_id
    ok = run(run_demo(plan))
    if not ok:
        raise typer.Exit(1)


def register(app: typer.Typer, worker: typer.Typer) -> None:
    app.command("demo")(demo)
