"""The end of a job: ONNX export, the onnxruntime check against torch, registration with lineage."""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from schemas.jobs import JobSpec
from schemas.registry import Lineage, ModelVersion
from streams.ml.export import export_onnx, validate_onnx
from streams.registry import Registry
from streams.settings import Settings

from .state import ServerState

log = logging.getLogger(__name__)


async def export_and_register(
    settings: Settings, spec: JobSpec, state: ServerState, x_check: np.ndarray,
    offsets: dict[str, int], metrics: dict[str, float],
) -> tuple[float, ModelVersion | None]:
    """(max abs difference onnxruntime vs torch, the registered version or None when not asked)."""
    onnx_bytes = await asyncio.to_thread(export_onnx, state.model, spec.model.input_dim)
    diff = await asyncio.to_thread(validate_onnx, onnx_bytes, state.model, x_check)
    log.info("job %s: ONNX export %d bytes, max abs diff vs torch %.3g", spec.job_id, len(onnx_bytes), diff)
    if not spec.export.register_model:
        return diff, None
    lineage = Lineage(job_id=spec.job_id, parameter_version=state.version, offsets=offsets,
                      metrics={**metrics, "onnx_max_abs_diff": diff})
    async with Registry(settings) as registry:
        mv = await registry.publish(spec.model_name, onnx_bytes, lineage=lineage, stage=spec.export.stage)
    log.info("job %s: registered %s version %d (%s)", spec.job_id, mv.name, mv.version, mv.stage)
    return diff, mv
