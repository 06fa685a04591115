"""``aiaas schemas export DIR``: JSON Schemas, so clients in other languages can produce valid messages."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from pydantic import BaseModel

import aiaas.schemas.inference as inference
import aiaas.schemas.jobs as jobs
import aiaas.schemas.records as records
import aiaas.schemas.registry as registry
import aiaas.schemas.training as training
from aiaas.schemas.envelope import Envelope
from aiaas.schemas.sources import Source

app = typer.Typer(no_args_is_help=True, help="Message contracts.")


def all_models() -> dict[str, type[BaseModel]]:
    """Every envelope model by its kind, plus non-envelope models that have a KIND-less name."""
    found: dict[str, type[BaseModel]] = {}
    for mod in (inference, jobs, records, registry, training):
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, Envelope) and obj is not Envelope:
                found[obj.KIND] = obj
    return found


@app.command()
def export(directory: Path) -> None:
    """Write one ``<kind>.schema.json`` per message kind into DIRECTORY."""
    directory.mkdir(parents=True, exist_ok=True)
    for kind, model in sorted(all_models().items()):
        schema = model.model_json_schema()
        schema.setdefault("properties", {})["kind"] = {"const": kind}
        (directory / f"{kind}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")
        typer.echo(f"wrote {directory / f'{kind}.schema.json'}")
    # the source: block (JobSpec, aiaas score --source); a spec, not a message: no kind (docs/sources.md)
    (directory / "source.schema.json").write_text(json.dumps(Source.model_json_schema(), indent=2) + "\n")
    typer.echo(f"wrote {directory / 'source.schema.json'}")
