"""Pipelines: one model version split into stage models that run on different workers
(docs/transformers.md, "Split a model across workers").

``split`` cuts a version's ONNX graph (``aiaas.registry.graphcut``), checks on sample inputs that the
stages chained give the whole graph's outputs (max abs difference <= ``TOLERANCE``), registers each
stage as a model of its own, ``<name>.stage<k>`` (a version with its own sha256, in production; the
first one keeps the graph's metadata and the bundle's files, so a text model's first stage tokenizes
text requests), and records the stages, in order, on the split version (``ModelVersion.pipeline``).
Callers keep calling ``<name>``: the first stage's workers serve its request topic and every stage
forwards its activations to the next one's (``aiaas.agents.inference.stages``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from aiaas.registry import graphcut
from aiaas.registry.store import Registry
from aiaas.schemas.errors import AiaasError, ErrorCode, NotFound
from aiaas.schemas.registry import Lineage, ModelVersion, TensorSignature

log = logging.getLogger(__name__)
TOLERANCE = 1e-4


def stage_name(name: str, k: int) -> str:
    """The model name of stage ``k`` (from 1) of pipeline ``name``."""
    return f"{name}.stage{k}"


@dataclass(frozen=True)
class StageRef:
    """One stage of a pipeline: which model version runs it, and which stage model comes next."""

    pipeline: str
    index: int  # from 1
    count: int
    model: str
    version: int
    next_model: str | None


def refs(mv: ModelVersion) -> list[StageRef]:
    """The stages recorded on a split version (``ModelVersion.pipeline``), first to last."""
    out: list[tuple[str, int]] = []
    for ref in mv.pipeline:
        model, _, version = ref.rpartition(":")
        out.append((model, int(version)))
    return [StageRef(mv.name, k + 1, len(out), model, version, out[k + 1][0] if k + 1 < len(out) else None)
            for k, (model, version) in enumerate(out)]


async def pipeline_version(reg: Registry, name: str, version: int | None = None) -> ModelVersion:
    """The split version of ``name``: ``version``, else production when it is split, else the newest
    split version; NotFound when there is none."""
    if version is not None:
        mv = await reg.get(name, version)
        if not mv.pipeline:
            raise NotFound("model version is not split into stages (run aiaas models split)", model=name,
                           version=version)
        return mv
    split_ones = [mv for mv in await reg.list(name) if mv.pipeline]
    if not split_ones:
        raise NotFound("model has no version split into stages (run aiaas models split)", model=name)
    prod = [mv for mv in split_ones if mv.stage == "production"]
    return prod[0] if prod else max(split_ones, key=lambda mv: mv.version)


async def stage(reg: Registry, name: str, index: int, version: int | None = None) -> StageRef:
    """Stage ``index`` (from 1) of pipeline ``name``."""
    stages = refs(await pipeline_version(reg, name, version))
    if not 1 <= index <= len(stages):
        raise AiaasError("no such pipeline stage", code=ErrorCode.BAD_REQUEST, model=name, stage=index,
                         stages=len(stages))
    return stages[index - 1]


def sample_inputs(inputs: list[TensorSignature], rows: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs to check a split on: dynamic axes 2 long (``rows`` on the first); floats normal, integers
    small token ids (masks all ones)."""
    from aiaas.schemas.inference import NUMPY_DTYPES

    rng = np.random.default_rng(seed)
    out = {}
    for s in inputs:
        shape = [(rows if i == 0 else 7) if d is None else d for i, d in enumerate(s.shape)]
        dtype = np.dtype(NUMPY_DTYPES[s.datatype])
        if dtype.kind == "f":
            out[s.name] = rng.normal(size=shape).astype(dtype)
        elif dtype.kind in "iu":
            ids = rng.integers(0, 50, shape).astype(dtype)
            out[s.name] = np.ones(shape, dtype) if "mask" in s.name else ids
        else:
            raise AiaasError("cannot make sample inputs of this datatype to check the split",
                             code=ErrorCode.BAD_REQUEST, input=s.name, datatype=s.datatype.value)
    return out


def chained(whole: bytes, stages: list[bytes], feeds: Mapping[str, np.ndarray]) -> float:
    """Max abs difference between the whole graph's float outputs and the stages' run in a chain
    (other outputs must be equal, else an INTERNAL error)."""
    import onnxruntime as ort

    def run(graph: bytes, have: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        out = sess.run(None, {i.name: have[i.name] for i in sess.get_inputs()})
        return dict(zip([o.name for o in sess.get_outputs()], out, strict=True))

    want = run(whole, feeds)
    have = dict(feeds)
    for graph in stages:
        have.update(run(graph, have))
    worst = 0.0
    for name, w in want.items():
        got = have[name]
        if w.dtype.kind == "f":
            worst = max(worst, float(np.max(np.abs(got - w))) if w.size else 0.0)
        elif not np.array_equal(got, w):
            raise AiaasError("split stages disagree with the whole model", code=ErrorCode.INTERNAL,
                             output=name)
    return worst


Split = tuple[ModelVersion, list[ModelVersion], float]


@dataclass(frozen=True)
class ExitHead:
    """An early exit: ``head`` (ONNX) on stage ``stage``'s outputs answers when confident enough."""

    head: bytes
    threshold: float = 0.9
    stage: int = 1


async def split(reg: Registry, name: str, stages: int, version: int | None = None,
                feeds: Mapping[str, np.ndarray] | None = None, exit_head: ExitHead | None = None) -> Split:
    """Split a version of ``name`` into ``stages`` stage models and register them as its pipeline
    (``exit_head``: one stage also answers confident requests itself); returns the split version,
    the stage versions and the checked max abs difference."""
    if len(stage_name(name, stages)) > 64:
        raise AiaasError("model name too long for its stage names", code=ErrorCode.BAD_REQUEST,
                         model=name, stage_name=stage_name(name, stages))
    mv = await reg.get(name, version)
    whole = await reg.load_bytes(mv)
    graphs = await asyncio.to_thread(graphcut.split, whole, stages)
    if exit_head is not None:
        if not 1 <= exit_head.stage < stages:
            raise AiaasError("an exit head goes on a stage before the last", code=ErrorCode.BAD_REQUEST,
                             exit_stage=exit_head.stage, stages=stages)
        k = exit_head.stage - 1
        graphs[k] = await asyncio.to_thread(graphcut.with_exit, graphs[k], exit_head.head,
                                            exit_head.threshold)
    sample = dict(feeds) if feeds is not None else sample_inputs(mv.inputs)
    diff = await asyncio.to_thread(chained, whole, graphs, sample)
    if diff > TOLERANCE:
        raise AiaasError("split stages differ from the whole model", code=ErrorCode.INTERNAL,
                         max_abs_diff=diff, tolerance=TOLERANCE)
    lineage = Lineage(job_id=mv.lineage.job_id, parameter_version=mv.lineage.parameter_version,
                      classes=mv.lineage.classes, metrics={"split_max_abs_diff": diff})
    files = {f.name: await reg.load_file(mv, f.name) for f in mv.files}  # a bundle's tokenizer: stage 1's
    published = [await reg.publish(stage_name(name, k + 1), g, lineage=lineage, stage="production",
                                   tenant=mv.tenant, files=files if k == 0 else None)
                 for k, g in enumerate(graphs)]
    split_mv = await reg.set_pipeline(name, mv.version, [f"{p.name}:{p.version}" for p in published])
    log.info("model %s version %d split into %d stages (max abs diff %.2e)", name, mv.version, stages, diff)
    return split_mv, published, diff
