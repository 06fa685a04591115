"""A model split with ``aiaas models split`` (its own process, as a shell runs it), served by one
stage-1 worker and two stage-2 workers (processes); SIGKILL one stage-2 worker under load: every
request is still answered, once, with the whole model's outputs (max abs difference <= 1e-4)."""

from __future__ import annotations

import json
import signal
import sys

import numpy as np
import onnxruntime as ort
import pytest

from aiaas.agents.processes import child_env
from aiaas.client.inference import InferenceClient, InferResult
from aiaas.registry.store import Registry
from aiaas.streams.settings import Settings
from tests import examples
from tests.infra import ROOT
from tests.spawn import run_to_end, spawn_workers, until_processes_balanced


@pytest.mark.timeout(180)
async def test_sigkill_one_of_two_stage_2_workers_under_load_loses_nothing(settings: Settings) -> None:
    data = examples.mlp([16, 64, 64, 4], seed=9)
    async with Registry(settings) as reg:
        await reg.publish("pk", data, stage="production")
    rc, out, err = await run_to_end(
        sys.executable, "-m", "aiaas.cli.main", "models", "split", "pk", "--stages", "2", timeout_s=60,
        cwd=ROOT, env=child_env({"AIAAS_TOPIC_PREFIX": settings.topic_prefix, "AIAAS_LOG_LEVEL": "WARNING"}))
    assert rc == 0, err
    made = json.loads(out)
    assert made["stages"] == ["pk.stage1:1", "pk.stage2:1"] and made["max_abs_diff"] <= 1e-4
    n, kill_after = 400, 100
    xs = np.random.default_rng(3).normal(size=(n, 1, 16)).astype(np.float32)
    flags = ("--partitions", "4")
    async with spawn_workers(settings, "pk", 1, "--pipeline-stage", "1", *flags) as first, \
            spawn_workers(settings, "pk", 2, "--pipeline-stage", "2", *flags) as second, \
            InferenceClient(settings) as client:
        await until_processes_balanced(first, 4)
        await until_processes_balanced(second, 4)
        got: dict[int, InferResult] = {}
        async for i, r in client.infer_many("pk", ({"input": x} for x in xs), window=50, timeout=60):
            assert isinstance(r, InferResult), r
            assert i not in got
            got[i] = r
            if len(got) == kill_after:
                second[0].proc.send_signal(signal.SIGKILL)
        assert await second[0].proc.wait() == -signal.SIGKILL
        assert second[1].proc.returncode is None and first[0].proc.returncode is None
    assert sorted(got) == list(range(n))
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": xs[:, 0]})[0]
    out_ = np.concatenate([got[i].outputs["logits"] for i in range(n)])
    assert float(np.max(np.abs(out_ - want))) <= 1e-4
