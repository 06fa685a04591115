"""Early exit on the real broker (``aiaas.registry.graphcut.with_exit``, agents/inference/stages.py):
stage 1 of a 2-stage MLP carries an exit head (here the second stage's own graph, so an early answer
must equal the whole model's); requests whose every row's highest probability reaches the threshold
are answered by stage 1, the rest by stage 2; stacked rows are decided request by request; asked
outputs hold at the exit too."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from aiaas.agents.inference import stages
from aiaas.agents.inference.settings import WorkerSettings
from aiaas.client.inference import InferenceClient, InferResult
from aiaas.registry import graphcut, pipelines
from aiaas.registry.store import Registry
from aiaas.streams.settings import Settings
from tests import examples
from tests.workers import running_worker


def classifier() -> bytes:
    """A random MLP with a softmax ``probabilities`` output beside its logits."""
    m = onnx.load_from_string(examples.mlp([16, 64, 64, 4], seed=11))
    m.graph.node.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1))
    m.graph.output.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 4]))
    return bytes(m.SerializeToString())


@pytest.mark.timeout(90)
async def test_confident_requests_exit_at_stage_1_and_answer_like_the_whole_model(settings: Settings) -> None:
    data = classifier()
    xs = np.random.default_rng(5).normal(size=(40, 1, 16)).astype(np.float32)
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": xs[:, 0]})
    threshold = float(np.median(want[1].max(axis=1)))  # about half of the requests exit
    head = graphcut.split(data, 2)[1]  # the rest of the model: an exit that answers as stage 2 does
    async with Registry(settings) as reg:
        await reg.publish("pe", data, stage="production")
        await pipelines.split(reg, "pe", 2, exit_head=pipelines.ExitHead(head, threshold))
    cfgs = [await stages.resolved(settings, WorkerSettings(model="pe", pipeline_stage=k, partitions=2))
            for k in (1, 2)]
    async with AsyncExitStack() as stack:
        workers = await asyncio.gather(*(stack.enter_async_context(running_worker(settings, **c.model_dump()))
                                         for c in cfgs))
        client = await stack.enter_async_context(InferenceClient(settings))
        got = {i: r async for i, r in client.infer_many("pe", ({"input": x} for x in xs), timeout=30)}
        sure = int(np.argmax(want[1].max(axis=1)))
        picked = await client.infer("pe", {"input": xs[sure]}, outputs=["probabilities"], timeout=30)
        exited, forwarded = workers[0].stats["exited"], workers[0].stats["forwarded"]
    assert exited >= 1 + len(xs) // 4 and forwarded >= len(xs) // 4, (exited, forwarded)
    assert sorted(got) == list(range(len(xs)))
    for i in range(len(xs)):
        r = got[i]
        assert isinstance(r, InferResult), r
        assert float(np.max(np.abs(r.outputs["logits"] - want[0][i:i + 1]))) <= 1e-4
    assert list(picked.outputs) == ["probabilities"]
    assert float(np.max(np.abs(picked.outputs["probabilities"] - want[1][sure:sure + 1]))) <= 1e-4
