"""Serving commands: ``aiaas models push|pull|list|promote|rollback|canary|mask`` (changes audited),
``aiaas infer`` and ``aiaas worker inference`` (one inference worker process; flags in
agents/inference/cli.py, plus ``--wait``: without it an unknown model name exits with an error
instead of waiting)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from aiaas.agents.inference.cli import inference
from aiaas.cli import errors, splitting, textmodels
from aiaas.cli.modelcheck import checked_worker, require_model, versions_of
from aiaas.cli.output import JsonOpt, show, show_json
from aiaas.schemas.audit import MODEL_CANARY, MODEL_MASK, MODEL_PROMOTE, MODEL_PUSH, MODEL_ROLLBACK

T = TypeVar("T")
models = typer.Typer(no_args_is_help=True, help="Model registry: versions, stages, canaries.")


def _run(body: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``body(registry)`` on uvloop with the environment's settings; errors exit 1 with one line."""
    from aiaas.registry.store import Registry
    from aiaas.streams.runtime import run
    from aiaas.streams.settings import Settings

    async def main() -> T:
        async with Registry(Settings()) as reg:
            return await body(reg)

    try:
        return run(main())
    except Exception as exc:
        if errors.describe(exc) is None:
            raise
        errors.report(exc)


def _audited(action: str, target: str, body: Callable[[Any], Awaitable[Any]], **details: Any) -> Any:
    """``_run(body)`` as one audited action (aiaas.streams.audit): ok with the version it left, or
    failed with why; the record goes out through the registry's own producer."""
    from aiaas.streams.audit import audited

    async def wrapped(reg: Any) -> Any:
        async with audited(reg.settings, action, target, producer=reg.producer, **details) as extra:
            mv = await body(reg)
            extra.update(version=mv.version, stage=mv.stage)
            return mv

    return _run(wrapped)


def _show(mv: Any) -> None:
    typer.echo(json.dumps(mv.model_dump(mode="json", exclude_none=True), indent=2))


@models.command("push")
def push(
    file: Annotated[Path, typer.Argument(exists=True, help="ONNX file, or a bundle directory")],
    name: Annotated[str, typer.Option(help="model name")],
    stage: Annotated[str, typer.Option(help="staging | production")] = "staging",
    job_id: Annotated[str | None, typer.Option(help="lineage: training job id")] = None,
) -> None:
    """Register an ONNX file as the next version of NAME (sha256 and signature recorded), or a
    bundle directory: model.onnx + config.json (+ tokenizer.json, labels.json), a sha256 each."""
    from aiaas.schemas.registry import Lineage

    data, files = textmodels.read_bundle(file) if file.is_dir() else (file.read_bytes(), None)
    _show(_audited(MODEL_PUSH, name, lambda reg: reg.publish(name, data, stage=stage,
                                                             lineage=Lineage(job_id=job_id), files=files),
                   file=file.name, requested_stage=stage))


@models.command("list")
def list_(name: Annotated[str | None, typer.Argument(help="only this model")] = None,
          as_json: JsonOpt = False) -> None:
    """Show every version (of NAME) with its stage; an unknown NAME is an error."""
    from rich.table import Table

    found = _run(lambda reg: versions_of(reg, name) if name is not None else reg.list())
    if as_json:
        show_json([mv.model_dump(mode="json", exclude_none=True) for mv in found])
        return
    table = Table("model", "version", "stage", "canary", "size", "sha256", "inputs", "job")
    for mv in found:
        sig = ", ".join(f"{t.name}:{t.datatype.value}{t.shape}" for t in mv.inputs)
        canary = f"{mv.canary_weight:.0%}" if mv.stage == "canary" else ""
        table.add_row(mv.name, str(mv.version), mv.stage, canary, f"{mv.size_bytes:,}", mv.sha256[:12],
                      sig, mv.lineage.job_id or "")
    show(table)


async def _pull(reg: Any, name: str, version: int | None) -> tuple[Any, bytes]:
    await versions_of(reg, name)
    mv = reg.pick(name, version)  # from what versions_of just read: no second round trip
    return mv, await reg.load_bytes(mv)


@models.command("pull")
def pull(
    model: Annotated[str, typer.Argument(help="NAME or NAME:VERSION (default: production, else the latest)")],
    out: Annotated[Path, typer.Option("-o", "--output", help="ONNX file to write (a bundle: a directory)")],
    bundle: Annotated[bool, typer.Option(help="a text model's bundle directory, also for a model "
                                         "registered as one ONNX file (from its metadata)")] = False,
) -> None:
    """Write a registered model's ONNX file (sha256 checked), e.g. to serve or inspect it elsewhere;
    a bundle's files all go to the directory OUT, each sha256 checked."""
    name, _, ver = model.partition(":")
    if ver and not ver.isdigit():
        raise typer.BadParameter(f"version must be a number, not {ver!r}", param_hint="MODEL")
    mv, data = _run(lambda reg: _pull(reg, name, int(ver) if ver else None))
    if mv.files or bundle:
        files = _run(lambda reg: textmodels.pull_files(reg, mv, data))
        typer.echo(textmodels.write_bundle(out, mv, data, files))
        return
    out.write_bytes(data)
    typer.echo(f"wrote {out} ({mv.name} v{mv.version}, {mv.stage}, {len(data):,} bytes, sha256 {mv.sha256})")


@models.command("promote")
def promote(name: str, version: int) -> None:
    """Make VERSION the production version of NAME (workers following production hot-reload)."""
    _show(_audited(MODEL_PROMOTE, name, lambda reg: reg.promote(name, version), requested_version=version))


@models.command("rollback")
def rollback(name: str) -> None:
    """Undo the last promotion of NAME."""
    _show(_audited(MODEL_ROLLBACK, name, lambda reg: reg.rollback(name)))


@models.command("canary")
def canary(name: str, version: int,
           weight: Annotated[float, typer.Option(help="share of requests, 0..1 (0 ends it)")]) -> None:
    """Serve VERSION to WEIGHT of NAME's requests beside production."""
    _show(_audited(MODEL_CANARY, name, lambda reg: reg.set_canary(name, version, weight),
                   requested_version=version, weight=weight))


@models.command("mask")
def mask(
    name: str, version: int,
    drop: Annotated[list[str] | None, typer.Option(help="a request parameter to remove (repeat)")] = None,
    hash_: Annotated[list[str] | None, typer.Option("--hash", help="one to hash (repeat)")] = None,
) -> None:
    """Declare NAME VERSION's personal request parameters, dropped or hashed by the bridge before
    Kafka (docs/security.md, "Masking"); neither option clears them."""
    from aiaas.schemas.masking import Masking

    spec = Masking(drop=drop or [], hash=hash_ or [])
    masking = None if spec.empty() else spec
    _show(_audited(MODEL_MASK, name, lambda reg: reg.set_masking(name, version, masking),
                   requested_version=version, drop=spec.drop, hash=spec.hash))


def infer(
    model: Annotated[str, typer.Argument(help="model name")],
    data: Annotated[str, typer.Option(help="OIP request JSON, or @file with it")],
    binary: Annotated[bool, typer.Option(help="binary tensor encoding on Kafka")] = False,
    version: Annotated[int | None, typer.Option(help="pin a version")] = None,
    timeout: Annotated[float, typer.Option(help="seconds")] = 30.0,
) -> None:
    """Send one inference request over Kafka and print the OIP response."""
    from aiaas.client.inference import InferenceClient
    from aiaas.schemas.errors import AiaasError
    from aiaas.schemas.inference import InferenceRequest
    from aiaas.streams.runtime import run
    from aiaas.streams.settings import Settings

    if data.startswith("@") and not Path(data[1:]).is_file():
        errors.fail(f"no such file: {data[1:]} (--data takes OIP request JSON, or @FILE holding it)", 2)
    raw = Path(data[1:]).read_text() if data.startswith("@") else data
    try:
        req = InferenceRequest.from_record(raw.encode())
    except AiaasError as exc:
        errors.fail(errors.describe(exc) or exc.reason, 2)

    async def main() -> str:
        await require_model(model)
        async with InferenceClient(Settings()) as client:
            result = await client.infer(model, req.inputs, timeout=timeout, version=version, binary=binary,
                                        parameters=req.parameters,
                                        outputs=[o.name for o in req.outputs] if req.outputs else None)
            return result.to_response().model_dump_json(exclude_none=True, indent=2)

    try:
        typer.echo(run(main()))
    except AiaasError as exc:
        errors.report(exc)


def register(app: typer.Typer, worker: typer.Typer) -> None:
    """Add this area's commands to the top-level `app` and its agents to `aiaas worker`."""
    models.command("export-encoder")(textmodels.export_encoder)
    models.command("split")(splitting.split)
    app.add_typer(models, name="models")
    app.command("infer")(infer)
    worker.command("inference")(checked_worker(inference))
