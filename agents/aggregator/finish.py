"""The end of a job: ONNX export, the onnxruntime check against torch, registration with lineage.

The exported graph takes raw features: the feature scaling the push learned (``DataInfo``), the
regression target scaling and, for classifiers, ``label`` and ``probabilities`` outputs travel inside
it (``aiaas.ml.export.Serving``), so a caller never has to know how training saw the data.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from aiaas.data.datainfo import JobData
from aiaas.ml.export import Head, Serving, export_onnx, validate_onnx
from aiaas.registry.store import Registry, Stage
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.registry import Lineage, ModelVersion, SourceLineage
from aiaas.streams.settings import Settings

from .reporting import target_note
from .state import ServerState

log = logging.getLogger(__name__)
HEADS: dict[str, Head] = {"cross_entropy": "softmax", "bce": "sigmoid", "mse": "none"}


def serving_of(spec: JobSpec, data: JobData | None) -> Serving:
    """What the served graph adds around the trained model, from what the push said about the data."""
    head = HEADS[spec.loss]
    if data is None:  # data pushed without a DataInfo: nothing known to fold in
        return Serving(head=head)
    info = data.info
    y_scale = (info.y_mean, info.y_std) if info.task == "regression" and spec.loss == "mse" else None
    return Serving(stats=(data.x_mean, data.x_std), y_scale=y_scale, head=head, classes=list(info.classes))


async def export_and_register(
    settings: Settings, spec: JobSpec, state: ServerState, x_check: np.ndarray, data: JobData | None,
    offsets: dict[str, int], metrics: dict[str, float], stage: Stage | None = None, *,
    source: SourceLineage | None = None, registry: Registry | None = None, in_place: bool = False,
) -> tuple[float, ModelVersion | None]:
    """(max abs difference onnxruntime vs torch, the registered version or None when not asked).
    ``x_check`` are test rows as trained on (scaled); they are checked as the raw rows they were.
    ``stage`` overrides the spec's (a model that missed its target is held in staging).
    ``in_place``: export the model itself, not a copy (the job's end: nothing steps it any more)."""
    serving = serving_of(spec, data)
    if data is not None:
        x_check = x_check * data.x_std + data.x_mean
    onnx_bytes = await asyncio.to_thread(export_onnx, state.model, spec.model.input_dim, serving=serving,
                                         in_place=in_place)
    diff = await asyncio.to_thread(validate_onnx, onnx_bytes, state.model, x_check, serving=serving,
                                   in_place=in_place)
    log.info("job %s: ONNX export %d bytes (outputs %s, scaling in graph: %s), max abs diff vs torch %.3g",
             spec.job_id, len(onnx_bytes), serving.outputs, serving.stats is not None, diff)
    if not spec.export.register_model:
        return diff, None
    lineage = Lineage(job_id=spec.job_id, parameter_version=state.version, offsets=offsets,
                      metrics={**metrics, "onnx_max_abs_diff": diff},
                      classes=[f"{c:g}" for c in serving.classes] if serving.head == "softmax" else [],
                      source=source)
    if registry is not None:  # continuous training keeps one open
        mv = await registry.publish(spec.model_name, onnx_bytes, lineage=lineage,
                                    stage=stage or spec.export.stage)
    else:
        async with Registry(settings) as reg:
            mv = await reg.publish(spec.model_name, onnx_bytes, lineage=lineage,
                                   stage=stage or spec.export.stage)
    log.info("job %s: registered %s version %d (%s)", spec.job_id, mv.name, mv.version, mv.stage)
    return diff, mv


async def conclude(
    settings: Settings, spec: JobSpec, state: ServerState, x_check: np.ndarray, data: JobData | None,
    offsets: dict[str, int], metrics: dict[str, float], *, met_target: bool, stop_reason: str | None,
    source: SourceLineage | None = None,
) -> tuple[str, str | None, int | None]:
    """Export and register, then the job's final (state, error, model version): ``failed`` when
    the export fails, ``missed_target`` when a target was not met: the model is registered all the
    same but held in staging (never replacing production unasked). Adds ``onnx_max_abs_diff``."""
    missed = None if met_target else target_note(spec, metrics, stop_reason)
    held: Stage | None = "staging" if missed and spec.export.stage == "production" else None
    try:
        diff, mv = await export_and_register(settings, spec, state, x_check, data, offsets, metrics, held,
                                             source=source, in_place=True)
    except Exception as exc:
        log.exception("job %s: export/registration failed", spec.job_id)
        return "failed", f"export/registration failed: {exc!r}", None
    metrics["onnx_max_abs_diff"] = diff
    if missed and held and mv is not None:
        missed += (f"; registered {mv.name} v{mv.version} in staging, not production "
                   f"(aiaas models promote {mv.name} {mv.version} to serve it anyway)")
    return ("missed_target" if missed else "succeeded"), missed, mv.version if mv else None
