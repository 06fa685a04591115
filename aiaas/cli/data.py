"""``aiaas data push``: a dataset onto the job's data topic (partitioned) and its test split apart."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from aiaas.cli.errors import describe
from aiaas.cli.output import console as wide_console

data_app = typer.Typer(no_args_is_help=True, help="Datasets on Kafka.")
console = wide_console()  # full names when piped (aiaas.cli.output)


def _data_spec(spec_file: Path | None, job: str | None, overrides: dict[str, Any]) -> tuple[str, Any]:
    """The job id and DataSpec: from ``--spec`` (its ``data`` section) with command-line overrides."""
    import yaml
    from pydantic import ValidationError

    from aiaas.schemas.envelope import validation_errors
    from aiaas.schemas.jobs import DataSpec, JobSpec

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        if spec_file is not None:
            raw = yaml.safe_load(spec_file.read_text())
            raw["data"] = (raw.get("data") or {}) | given
            spec = JobSpec.model_validate(raw)  # re-checks cross-field rules with the overrides
            return job or spec.job_id, spec.data
        if job is None:
            raise typer.BadParameter("give --job (or --spec job.yaml)", param_hint="--job")
        return job, DataSpec.model_validate(given)
    except ValidationError as exc:
        where = "" if spec_file is not None else "data."
        for err in validation_errors(exc):
            console.print(f"[red]invalid spec[/]: [bold]{where}{err['field']}[/]: {err['message']}")
        raise typer.Exit(2) from exc


def _summary(report: Any) -> None:
    table = Table(title=f"{report.job_id}: {report.strategy} over {report.partitions} partitions")
    table.add_column("partition", justify="right")
    table.add_column("rows", justify="right")
    table.add_column("batches", justify="right")
    if report.classes_per_partition:
        table.add_column("classes", justify="right")
    for p in range(report.partitions):
        cells = [str(p), str(report.rows_per_partition[p]), str(report.batches_per_partition[p])]
        if report.classes_per_partition:
            cells.append(f"{report.classes_per_partition[p]}/{report.n_classes}")
        table.add_row(*cells)
    console.print(table)
    console.print(
        f"task [bold]{report.task}[/], {report.n_features} features; train -> [cyan]{report.data_topic}[/], "
        f"{report.test_rows} test rows -> [cyan]{report.test_topic}[/]; "
        f"{report.bytes_written / 1e6:.2f} MB in {report.seconds:.2f}s"
    )


@data_app.command()
def push(
    job: Annotated[str | None, typer.Option(help="Job id (default: the spec's job_id).")] = None,
    spec: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="Job spec YAML.")] = None,
    source: Annotated[str | None, typer.Option(help="digits | diabetes | csv | npy")] = None,
    path: Annotated[str | None, typer.Option(help="File for csv / npy (.npy or .npz) sources.")] = None,
    target_column: Annotated[str | None, typer.Option(help="CSV target column (default: last).")] = None,
    task: Annotated[str | None, typer.Option(help="auto | classification | regression")] = None,
    strategy: Annotated[str | None, typer.Option(
        help="random | sequential | stratified (every class everywhere) | label (each class on one "
             "partition) | hash")] = None,
    partitions: Annotated[int | None, typer.Option(help="Data partitions (= most trainers).")] = None,
    batch_rows: Annotated[int | None, typer.Option(help="Rows per batch record.")] = None,
    test_fraction: Annotated[float | None, typer.Option(help="Held-out fraction.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the split and partitioner.")] = None,
) -> None:
    """Split, partition and write a dataset to ``train.<job>.data``; the test split to ``.test``."""
    from aiaas.data.datapush import push_data
    from aiaas.schemas.errors import AiaasError
    from aiaas.streams.runtime import run
    from aiaas.streams.settings import get_settings

    overrides = {"source": source, "path": path, "target_column": target_column, "task": task,
                 "strategy": strategy, "partitions": partitions, "batch_rows": batch_rows,
                 "test_fraction": test_fraction, "seed": seed}
    job_id, data = _data_spec(spec, job, overrides)
    try:
        report = run(push_data(get_settings(), job_id, data))
    except AiaasError as exc:
        console.print(f"[red]push failed[/]: {escape(describe(exc) or exc.reason)}", highlight=False)
        raise typer.Exit(1) from exc
    _summary(report)


def register(app: typer.Typer, worker: typer.Typer) -> None:
    """Add this area's commands to the top-level `app` and its agents to `aiaas worker`."""
    app.add_typer(data_app, name="data")
