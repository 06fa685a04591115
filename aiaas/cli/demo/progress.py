"""A live Rich progress bar that follows ``train.<job>.metrics`` while the job runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from aiaas.streams.jobs import follow_metrics
from aiaas.streams.settings import Settings

if TYPE_CHECKING:
    from aiaas.cli.demo.report import Summary


async def follow_training(settings: Settings, job_id: str, summary: Summary, console: Console) -> None:
    """Update a progress bar (towards the accuracy target) with every metrics record; runs until cancelled."""
    columns = (
        TextColumn("[bold]training[/]"), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("waiting for the first step", total=1.0)
        async for msg in follow_metrics(settings, job_id):
            if msg is None:
                continue
            summary.metrics.append(msg)
            acc = msg.test_accuracy
            desc = f"version {msg.version}  loss {msg.loss or float('nan'):.3f}"
            if acc is not None:
                desc += f"  accuracy {acc:.3f}"
            if msg.samples_per_s:
                desc += f"  {msg.samples_per_s:,.0f} samples/s"
            bar.update(task, completed=acc or 0.0, description=desc)
