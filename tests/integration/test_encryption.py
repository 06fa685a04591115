"""Payload encryption on the real broker (docs/security.md, "Payload encryption"): a raw consumer of
the request, reply and dead-letter topics finds no plaintext value (a marker tensor, its outputs);
replies are right; a wrong or unknown data key gets a clear error reply naming the key id while the
worker goes on; dead letters keep ciphertext."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import onnxruntime as ort
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from aiaas.agents.launcher import run_in_process
from aiaas.client.inference import InferenceClient, InferenceError, InferResult, encode_request
from aiaas.data.datasets import load_dataset
from aiaas.registry.store import Registry
from aiaas.schemas.jobs import JobSpec
from aiaas.streams import headers as h
from aiaas.streams.admin import Admin
from aiaas.streams.envelope import Sealer, is_sealed
from aiaas.streams.keyring import Keyring, key_file_json, new_key
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests import examples
from tests.workers import running_worker

MARKER = np.full((1, 4), 1234.5678, np.float32)  # its bytes must appear on no topic


Raw = tuple[str, bytes, dict[str, str]]


async def raw_values(settings: Settings, topics: list[str]) -> list[Raw]:
    """Every record (topic, value, headers) of ``topics`` up to their end offsets, read with a bare
    aiokafka consumer."""
    tps: list[TopicPartition] = []
    async with Admin(settings) as admin:
        for t in topics:
            tps += [TopicPartition(t, p) for p in range(await admin.partitions(t))]
    cons = AIOKafkaConsumer(**settings.common_kwargs(), enable_auto_commit=False, group_id=None)
    await cons.start()
    out: list[Raw] = []
    try:
        cons.assign(tps)
        await cons.seek_to_beginning(*tps)
        ends = await cons.end_offsets(tps)
        async with asyncio.timeout(15):
            while [tp for tp in tps if await cons.position(tp) < ends[tp]]:
                for recs in (await cons.getmany(timeout_ms=300)).values():
                    out += [(r.topic, r.value or b"", h.decode(r.headers)) for r in recs]
    finally:
        await cons.stop()
    return out


@pytest.fixture
def acme(monkeypatch: pytest.MonkeyPatch) -> Keyring:
    """Tenant acme's data key, known to the worker through AIAAS_DATA_KEYS."""
    key = new_key("acme", "acme-1")
    monkeypatch.setenv("AIAAS_DATA_KEYS", key_file_json([key]))
    return Keyring([key])


async def test_sealed_requests_and_replies_carry_no_plaintext(settings: Settings, acme: Keyring) -> None:
    model = examples.mlp([4, 8, 3], seed=7)
    async with Registry(settings) as reg:
        await reg.publish("enc", model, stage="production")
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"input": MARKER})[0]
    wrong = Keyring([new_key("acme", "acme-1")])  # same id, another key
    ghost = Keyring([new_key("ghost", "ghost-1")])  # an id the worker does not know
    chunky = settings.model_copy(update={"chunk_bytes": 1024})  # a reply frame of many rows goes in chunks
    async with running_worker(chunky, model="enc", max_wait_ms=20) as worker, \
            InferenceClient(settings, sealer=Sealer(acme, "acme")) as good, \
            InferenceClient(settings, sealer=Sealer(wrong, "acme")) as bad, \
            InferenceClient(settings, sealer=Sealer(ghost, "ghost")) as unknown:
        first = await good.infer("enc", {"input": MARKER}, timeout=20)
        np.testing.assert_allclose(first.outputs["logits"], want, rtol=1e-5)
        with pytest.raises(InferenceError) as refused:
            await bad.infer("enc", {"input": MARKER}, timeout=20)
        assert refused.value.status_code == 400 and refused.value.details["data_key"] == "acme-1"
        assert "wrong key" in refused.value.reason
        with pytest.raises(InferenceError) as missing:
            await unknown.infer("enc", {"input": MARKER}, timeout=20)
        assert missing.value.status_code == 403 and missing.value.details["data_key"] == "ghost-1"
        with pytest.raises(InferenceError) as shape:  # opened, then refused: its dead letter stays sealed
            await good.infer("enc", {"input": np.full((1, 5), 1234.5678, np.float32)}, timeout=20)
        assert shape.value.status_code == 400
        oip = encode_request({"input": MARKER}, request_id="oip-1")  # a single OIP JSON record
        single = await good.request("enc", oip.value, oip.headers, request_id="oip-1", timeout=20)
        np.testing.assert_allclose(single.result().outputs["logits"], want, rtol=1e-5)
        rows = [r async for _, r in good.infer_many("enc", [{"input": MARKER}] * 200, timeout=20)]
        assert all(isinstance(r, InferResult) for r in rows)  # the worker went on
        np.testing.assert_allclose(np.concatenate([r.outputs["logits"] for r in rows  # type: ignore[union-attr]
                                                   ]), np.repeat(want, 200, axis=0), rtol=1e-5)
        assert worker.sealing.opened >= 3 and worker.stats["error_forbidden"] == 1
        topics = [worker.requests_topic.name, good.reply_topic, worker.dead_letters.topic]
    records = await raw_values(settings, topics)
    marker, out_bytes = MARKER.tobytes()[:8], want.astype(np.float32).tobytes()
    json_marker, json_out = b"1234.56", json.dumps(float(want[0, 0]))[:7].encode()
    requests = [(v, hd) for t, v, hd in records if t == topics[0]]
    assert len(requests) >= 5
    assert all(hd[h.DATA_KEY] in ("acme-1", "ghost-1") and is_sealed(v) for v, hd in requests)
    replies = [(v, hd) for t, v, hd in records if t == topics[1]]
    assert len(replies) >= 3 and all(hd[h.DATA_KEY] == "acme-1" for _, hd in replies)
    # a chunk after the first is the sealed value's tail
    assert all(is_sealed(v) for v, hd in replies if hd.get(h.CHUNK_INDEX, "0") == "0")
    assert any(h.CHUNK_ID in hd for _, hd in replies)  # sealed, then chunked; put back together, then opened
    letters = [json.loads(v) for t, v, _ in records if t == topics[2]]
    assert len(letters) == 3, letters  # wrong key, unknown key, wrong shape
    kept = [base64.b64decode(x["value_b64"]) for x in letters]
    assert all(is_sealed(v) for v in kept)  # ciphertext, never the opened payload
    assert {x["details"].get("data_key") for x in letters} >= {"acme-1", "ghost-1"}
    for value in [v for _, v, _ in records] + kept:
        assert marker not in value and out_bytes not in value
        assert json_marker not in value and json_out not in value


async def test_sealed_training_data_trains_and_stays_sealed(settings: Settings, acme: Keyring,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`data push` seals the rows under the tenant's key; the trainer and the aggregator (test split)
    open them in memory: the job trains, and no row is readable on the data or test topic."""
    monkeypatch.setenv("AIAAS_DATA_KEY_TENANT", "acme")
    spec = JobSpec.model_validate({
        "job_id": "sealed", "model": {"input_dim": 64, "hidden": [32], "output_dim": 10}, "trainers": 1,
        "optimizer": {"name": "adam", "lr": 1e-2}, "steps": 12, "eval_interval": 6,
        "sync": {"mode": "sync"}, "data": {"source": "digits", "partitions": 1}})
    status = await run_in_process(settings, spec, timeout_s=90)
    assert status.state in ("succeeded", "missed_target"), status.error
    assert status.metrics["test_accuracy"] > 0.5  # trained on opened rows, scored on the opened test split
    t = Topics(settings)
    records = await raw_values(settings, [t.train_data("sealed", 1).name, t.train_test("sealed").name])
    batches = [(v, hd) for _, v, hd in records if hd.get(h.DATA_KEY) is not None]
    assert len(batches) >= len(records) - 1  # all but the DataInfo record
    assert all(hd[h.DATA_KEY] == "acme-1" and is_sealed(v) for v, hd in batches)
    ds = load_dataset(spec.data)
    rows = [x.astype(np.float32).tobytes()[:32] for x in (*ds.x_train[:20], *ds.x_test[:20]) if x[:8].any()]
    assert rows and not any(row in v for row in rows for _, v, _ in records)
