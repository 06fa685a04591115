"""Poison pills on the real broker, two worker processes: replies JSON cannot carry (NaN, infinity)
and replies over the record limit, sent without a deadline to every partition. Each gets its
answer (an error reply with the reason, or the reply in chunks the client reassembles; 413 over
the worker's reply limit) and the dead letters say why; afterwards both workers are alive, kept
their partitions and answer normal requests."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from aiaas.client.inference import InferenceClient, InferenceError, InferResult, Reply, encode_request
from aiaas.registry.store import Registry
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests.inferreads import dead_letters
from tests.poisonmodels import expected, log_tiled
from tests.spawn import spawn_workers, until_processes_balanced

LIMIT, CHUNK, MAX_REPLY = 256 * 1024, 128 * 1024, 1024 * 1024
PARTITIONS = 8


async def ask(client: InferenceClient, producer: Producer, partition: int, x: np.ndarray,
              *, framed: bool) -> asyncio.Future[Reply]:
    """One request to ``partition``, without a deadline (the worst poison: nothing expires it): a
    plain OIP JSON record, or (``framed``) a frame of it alone."""
    rid = client.new_id()
    if framed:
        value, kind = frame.encode([frame.Entry([rid], {"x": x})])
        content = h.decode(kind)
    else:
        enc = encode_request({"x": x}, request_id=rid)
        value, content = enc.value, enc.headers
    fut = await client.waiting.add(rid, 90)
    topic = Topics(client.settings).infer_requests("poison").name
    headers = {**content, h.CORRELATION_ID: rid, h.REPLY_TO: client.reply_topic}
    await (await producer.send(topic, value, key=rid, headers=headers, partition=partition))
    return fut


def error_of(reply: Reply) -> InferenceError:
    assert not reply.ok, reply.headers
    return reply.error()


@pytest.mark.timeout(240)
async def test_oversized_and_nan_replies_with_two_workers_both_alive_after(settings: Settings) -> None:
    small = settings.model_copy(update={"max_message_bytes": LIMIT, "chunk_bytes": CHUNK,
                                        "heartbeat_interval_ms": 500, "session_timeout_ms": 6000})
    async with Registry(small) as reg:
        await reg.publish("poison", log_tiled(), stage="production")
    env = {"AIAAS_MAX_MESSAGE_BYTES": str(LIMIT), "AIAAS_CHUNK_BYTES": str(CHUNK),
           "AIAAS_INFER_MAX_REPLY_BYTES": str(MAX_REPLY)}
    one = np.ones((1, 1), np.float32)
    nan, big = np.full((1, 1), -1.0, np.float32), np.full((1, 60), 2.0, np.float32)  # 240 KB in a frame
    big_json = np.ones((1, 70), np.float32)  # 70000 zeros: 280 KB of JSON, encoded in a thread
    huge = np.full((1, 300), 2.0, np.float32)  # 1.2 MB: over the worker's reply limit
    async with spawn_workers(small, "poison", 2, env=env) as procs, InferenceClient(small) as client, \
            Producer(small) as producer:
        await until_processes_balanced(procs, PARTITIONS)
        owned = [p.partitions for p in procs]
        kinds = ("nan_json", "nan_frame", "big_json", "big_frame", "huge")
        futs: dict[str, list[asyncio.Future[Reply]]] = {k: [] for k in kinds}
        for p in range(PARTITIONS):
            futs["nan_json"].append(await ask(client, producer, p, nan, framed=False))
            futs["nan_frame"].append(await ask(client, producer, p, nan, framed=True))
            futs["big_json"].append(await ask(client, producer, p, big_json, framed=False))
            futs["big_frame"].append(await ask(client, producer, p, big, framed=True))
            futs["huge"].append(await ask(client, producer, p, huge, framed=True))
        got = {k: await asyncio.gather(*v) for k, v in futs.items()}
        for r in got["nan_json"]:
            err = error_of(r)
            assert err.status_code == 400 and "NaN or infinity" in err.reason and err.details["tensor"] == "y"
        for r in got["nan_frame"]:
            assert np.isnan(r.result().outputs["y"]).all()
        for kind, x in (("big_json", big_json), ("big_frame", big)):
            for r in got[kind]:
                np.testing.assert_allclose(r.result().outputs["y"], expected(x), rtol=1e-6)
        for r in got["huge"]:
            err = error_of(r)
            assert err.status_code == 413 and err.details["limit"] == MAX_REPLY

        # the pipelined path (frames, rows of one layout stacked), poison inside: replies over the
        # worker's limit fail alone (413), NaN travels in the binary frame
        mixed: list[dict[str, Any]] = [{"x": huge if i % 4 == 0 else nan if i % 4 == 1 else one}
                                       for i in range(32)]
        out = {i: r async for i, r in client.infer_many("poison", mixed, window=32, timeout=60)}
        too_big = [out[i] for i in range(0, 32, 4)]
        assert all(isinstance(r, InferenceError) and r.status_code == 413 for r in too_big), too_big
        assert all(isinstance(out[i], InferResult) for i in range(32) if i % 4)
        for i in range(1, 32, 4):
            r = out[i]
            assert isinstance(r, InferResult) and np.isnan(r.outputs["y"]).all()
        rows = [{"x": big} for _ in range(12)]
        out = {i: r async for i, r in client.infer_many("poison", rows, window=12, timeout=60, binary=True)}
        for r in out.values():
            assert isinstance(r, InferResult), r
            np.testing.assert_allclose(r.outputs["y"], expected(big), rtol=1e-6)

        # both workers alive, no rebalance (nobody died), and every partition still answered
        normal = [await ask(client, producer, p, one, framed=False) for p in range(PARTITIONS)]
        for r in await asyncio.gather(*normal):
            np.testing.assert_array_equal(r.result().outputs["y"], np.zeros((1, 1000), np.float32))
        assert [p.proc.returncode for p in procs] == [None, None]
        assert [p.partitions for p in procs] == owned
        assert client.malformed == 0
    letters = await dead_letters(small, "poison", 2 * PARTITIONS + 8)
    reasons = sorted({(d.code, d.reason.split(";")[0]) for d in letters})
    assert reasons == [("invalid_message", "NaN or infinity cannot be sent as JSON"),
                       ("too_large", "reply over the worker's size limit (max_reply_bytes)")], reasons
