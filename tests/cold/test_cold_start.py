"""First thing on a freshly formatted broker, each on its own: training (``aiaas train``) and serving
(a registered model, an inference worker, a client request; started before the broker is up). Such
a broker has no group coordinator until ``__consumer_offsets`` exists, and no leader for a topic
created a moment ago; every start path must wait that out (``aiaas.streams.retry``), not fail with
GroupCoordinatorNotAvailable."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from aiaas.client.inference import InferenceClient
from aiaas.registry.store import Registry
from aiaas.streams.admin import Admin
from tests import examples
from tests.cold.conftest import ColdBroker
from tests.infra import ROOT
from tests.spawn import run_to_end
from tests.workers import running_worker

pytestmark = pytest.mark.timeout(240)

SPEC = """\
job_id: cold-start
model: {input_dim: 64, hidden: [32], output_dim: 10}
optimizer: {name: adam, lr: 0.003}
epochs: 3
eval_interval: 5
sync: {mode: sync, straggler_deadline_ms: 1000}
trainers: 1
data: {source: digits, partitions: 2}
export: {model_name: cold-digits, stage: production}
"""


async def train(cold: ColdBroker, tmp: Path) -> tuple[int, str]:
    """``aiaas train`` as a user runs it: data push, aggregator and trainer processes, export."""
    spec = tmp / "cold.yaml"
    spec.write_text(SPEC)
    env = {**os.environ, **cold.env, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    code, out, _ = await run_to_end(sys.executable, "-m", "aiaas.cli.main", "train", "--spec", str(spec),
                                    "--log-dir", str(tmp / "logs"), timeout_s=200, merge_stderr=True,
                                    env=env, cwd=ROOT)
    return code, out.decode(errors="replace")


async def serve(cold: ColdBroker) -> tuple[np.ndarray, np.ndarray]:
    """Register a model, start a worker (a consumer group) and a client, ask once."""
    model = examples.mlp([4, 8, 3], seed=5)
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 8
    async with Registry(cold.settings) as reg:
        await reg.publish("cold-mlp", model, stage="production")
    async with running_worker(cold.settings, model="cold-mlp"), InferenceClient(cold.settings) as client:
        result = await client.infer("cold-mlp", {"input": x}, timeout=60)
    expected = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    return next(iter(result.outputs.values())), expected


async def assert_cold(cold: ColdBroker) -> None:
    async with Admin(cold.settings) as admin:
        assert "__consumer_offsets" not in await admin.list_topics()  # no group has met here yet


async def test_training_first_thing_on_a_fresh_broker(cold_broker: ColdBroker, tmp_path: Path) -> None:
    await assert_cold(cold_broker)
    code, output = await train(cold_broker, tmp_path)
    logs = "\n".join(p.read_text()[-2000:] for p in (tmp_path / "logs").glob("*.log"))
    assert code == 0, f"{output}\n{logs}"
    assert "succeeded" in output and "cold-digits:1" in output
    async with Registry(cold_broker.settings) as reg:
        trained = await reg.get("cold-digits", stage="production")
        assert trained.lineage.job_id == "cold-start" and trained.version == 1


async def test_serving_first_thing_on_a_fresh_broker_started_after_its_clients(
    cold_broker_down: ColdBroker,
) -> None:
    """Serving is started while nothing listens yet (the broker comes up after its clients, as with
    ``make demo`` or docker compose): the registry (admin, producer, reader), the worker (its group)
    and the client retry the refused connections, and once the broker is up (freshly formatted: no
    coordinator yet either) the request is answered as onnxruntime answers it."""
    cold = cold_broker_down
    serving = asyncio.create_task(serve(cold))
    done, _ = await asyncio.wait([serving], timeout=1.0)  # still retrying: nothing listens yet
    assert not done
    await cold.start_async()
    served, expected = await serving
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
