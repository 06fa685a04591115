"""``aiaas models split NAME --stages K [--version V]``: cut a registered model between its layers into
K stage models served by different workers (docs/transformers.md, "Split a model across workers";
``aiaas.registry.pipelines``). The registration is audited as one push of NAME."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from aiaas.cli import errors
from aiaas.schemas.audit import MODEL_PUSH


def split(
    name: Annotated[str, typer.Argument(help="the model to split (callers keep calling it by this name)")],
    stages: Annotated[int, typer.Option(help="how many stages (workers in a chain)", min=2)] = 2,
    version: Annotated[int | None, typer.Option(help="the version to split (default: production, else "
                                                "the latest)")] = None,
    exit_head: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help=(
        "early exit: an ONNX head from a stage's outputs to a 'scores' or 'probabilities' output"))] = None,
    exit_threshold: Annotated[float, typer.Option(help="answer at the exit when every row's highest "
                                                  "probability is at least this", min=0.0)] = 0.9,
    exit_stage: Annotated[int, typer.Option(help="the stage the exit head runs on", min=1)] = 1,
) -> None:
    """Split NAME's graph at layer boundaries into stage models NAME.stage1..K (each a version with its
    own sha256), check on sample inputs that chained they answer like NAME (max abs diff <= 1e-4), and
    record them, in order, as NAME's pipeline; prints what to run. With --exit-head, stage
    --exit-stage also answers a request itself when the head is confident (early exit)."""
    from aiaas.registry import pipelines
    from aiaas.registry.store import Registry
    from aiaas.streams.audit import audited
    from aiaas.streams.runtime import run
    from aiaas.streams.settings import Settings

    async def main() -> dict[str, Any]:
        settings = Settings()
        async with Registry(settings) as reg, \
                audited(settings, MODEL_PUSH, name, producer=reg.producer, split_stages=stages) as extra:
            head = None if exit_head is None else \
                pipelines.ExitHead(exit_head.read_bytes(), exit_threshold, exit_stage)
            mv, published, diff = await pipelines.split(reg, name, stages, version, exit_head=head)
            extra.update(version=mv.version, pipeline=mv.pipeline)
        return {"model": name, "version": mv.version, "stages": mv.pipeline, "max_abs_diff": diff,
                "sha256": [p.sha256 for p in published],
                "serve": [f"aiaas worker inference --model {name} --pipeline-stage {k + 1}"
                          for k in range(stages)]}

    try:
        typer.echo(json.dumps(run(main()), indent=2))
    except Exception as exc:
        if errors.describe(exc) is None:
            raise
        errors.report(exc)
