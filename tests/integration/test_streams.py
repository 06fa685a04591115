"""The streams layer against the real broker: topics, produce/consume, chunking, DLQ, commits."""

from __future__ import annotations

import asyncio
import base64
import os

import numpy as np
import pytest
from aiokafka.errors import KafkaError

from aiaas.schemas.records import DeadLetter
from aiaas.schemas.training import DataBatch
from aiaas.streams import codecs
from aiaas.streams.admin import Admin
from aiaas.streams.consumer import Consumer
from aiaas.streams.dlq import DeadLetters
from aiaas.streams.producer import Producer
from aiaas.streams.record import Record
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics, TopicSpec


async def drain(consumer: Consumer, want: int, timeout_s: float = 30.0, **kw: object) -> list[Record]:
    """Poll until ``want`` records arrived (or fail after ``timeout_s``): readiness, not sleeps."""
    out: list[Record] = []
    async with asyncio.timeout(timeout_s):
        while len(out) < want:
            out += await consumer.getmany(timeout_ms=200, **kw)  # type: ignore[arg-type]
    return out


async def test_ensure_topics_is_idempotent(admin: Admin, settings: Settings) -> None:
    specs = Topics(settings).control_plane()
    created = await admin.ensure_topics(specs)
    assert sorted(created) == sorted(s.name for s in specs)
    assert await admin.ensure_topics(specs) == []
    assert {s.name for s in specs} <= await admin.list_topics()


async def test_tensor_records_round_trip(admin: Admin, settings: Settings) -> None:
    topic = settings.topic("data")
    await admin.ensure_topics([TopicSpec(name=topic, partitions=2)])
    x = np.random.default_rng(0).normal(size=(32, 64)).astype(np.float32)
    y = np.arange(32, dtype=np.int64)
    async with Producer(settings) as prod:
        header = DataBatch(job_id="j", batch_index=3, rows=32)
        await prod.send_and_wait(topic, codecs.pack(header, {"x": x, "y": y}), key="b3")
    async with Consumer(settings, [topic], "g1") as cons:
        (rec,) = await drain(cons, 1, decode=lambda r: codecs.unpack(r.value, DataBatch))
        head, tensors = rec.message
        assert head.batch_index == 3
        np.testing.assert_array_equal(tensors["x"], x)
        np.testing.assert_array_equal(tensors["y"], y)


async def test_large_payload_is_chunked_and_reassembled(admin: Admin, settings: Settings) -> None:
    s = settings.model_copy(update={"chunk_bytes": 256 * 1024})
    topic = s.topic("big")
    await admin.ensure_topics([TopicSpec(name=topic, partitions=3)])
    payload = os.urandom(3 * 1024 * 1024 + 17)
    async with Producer(s) as prod:
        await prod.send_and_wait(topic, payload, key="model:1")
        await prod.send_and_wait(topic, b"small", key="model:1")
    async with Consumer(s, [topic], "g") as cons:
        recs = await drain(cons, 2)
        assert recs[0].value == payload and recs[0].key == b"model:1"
        assert recs[0].first_offset == 0 and recs[0].offset == 12
        assert recs[1].value == b"small"
        await cons.commit(recs)
        committed = await cons.raw.committed(recs[1].tp)
        assert committed == recs[1].offset + 1


async def test_a_payload_whose_chunks_the_topic_refuses_is_not_reported_sent(admin: Admin,
                                                                            settings: Settings) -> None:
    """The topic takes records of 2 KB: every full 8 KiB chunk is refused, the short last one fits.
    The send fails with the broker's reason (it used to report the last chunk's ack: sent)."""
    s = settings.model_copy(update={"chunk_bytes": 8 * 1024})
    topic = s.topic("narrow")
    await admin.ensure_topics([TopicSpec(name=topic, partitions=1, config={"max.message.bytes": "2048"})])
    async with Producer(s) as prod:
        with pytest.raises(KafkaError) as refused:
            await prod.send_and_wait(topic, os.urandom(5 * 8 * 1024 + 100), key="big")
        assert not refused.value.retriable
        await prod.send_and_wait(topic, b"small", key="after")  # the producer goes on


async def test_malformed_records_go_to_dlq_and_offsets_move_on(admin: Admin, settings: Settings) -> None:
    topic, dlq = settings.topic("in"), settings.topic("in.dlq")
    await admin.ensure_topics([TopicSpec(name=topic), TopicSpec(name=dlq)])
    good = DataBatch(job_id="j", batch_index=1, rows=1).to_record()
    wrong_schema = b'{"kind":"data_batch","job_id":"j","batch_index":-1,"rows":0}'
    async with Producer(settings) as prod:
        await prod.send_and_wait(topic, b"\x00not json", key="a")
        await prod.send_and_wait(topic, wrong_schema, key="b")
        # a truncated chunked payload: 2 of 3 chunks, then the stream goes on
        hdrs = {"chunk-id": "c1", "chunk-count": 3, "chunk-sha256": "0" * 64}
        await prod.send_and_wait(topic, b"part0", key="c", headers={**hdrs, "chunk-index": 0})
        await prod.send_and_wait(topic, b"part1", key="c", headers={**hdrs, "chunk-index": 1})
        await prod.send_and_wait(topic, good, key="d")
    async with Producer(settings) as dlq_prod:
        letters = DeadLetters(dlq_prod, dlq)
        async with Consumer(settings, [topic], "g", dead_letters=letters, chunk_timeout_s=0.5) as cons:
            decode = lambda r: DataBatch.from_record(r.value)  # noqa: E731
            recs = await drain(cons, 1, decode=decode)
            assert [r.message.batch_index for r in recs] == [1]
            async with asyncio.timeout(20):  # the truncated payload expires and is dead-lettered
                while letters.count < 3:
                    await cons.getmany(timeout_ms=200, decode=decode)
            await cons.commit(recs)
            assert await cons.raw.committed(recs[0].tp) == 5
    async with Consumer(settings, [dlq], None) as reader:
        dead = [DeadLetter.from_record(r.value) for r in await drain(reader, 3)]
    reasons = {d.source_offset: d for d in dead}
    assert reasons[0].code == "invalid_message" and "not JSON" in reasons[0].reason
    assert base64.b64decode(reasons[0].value_b64 or "") == b"\x00not json"
    assert reasons[1].code == "invalid_message"
    assert any(e["field"] == "batch_index" for e in reasons[1].details["errors"])
    assert reasons[2].code == "chunk_error" and "truncated" in reasons[2].reason


async def test_uncommitted_work_is_redelivered(admin: Admin, settings: Settings) -> None:
    topic = settings.topic("redeliver")
    await admin.ensure_topics([TopicSpec(name=topic)])
    async with Producer(settings) as prod:
        for i in range(10):
            await prod.send(topic, str(i).encode())
        await prod.flush()
    async with Consumer(settings, [topic], "g") as cons:
        recs = await drain(cons, 10)
        await cons.commit(recs[:4])  # crash after processing 4 of them
        cons.mark_done([])  # nothing else is done
        cons._done.clear()
    async with Consumer(settings, [topic], "g") as again:
        recs = await drain(again, 6)
        assert [r.value for r in recs] == [str(i).encode() for i in range(4, 10)]


@pytest.mark.parametrize("size", [0, 1, 1024])
async def test_producer_keys_and_headers(admin: Admin, settings: Settings, size: int) -> None:
    topic = settings.topic(f"h{size}")
    await admin.ensure_topics([TopicSpec(name=topic)])
    async with Producer(settings) as prod:
        await prod.send_and_wait(topic, b"x" * size, key="k", headers={"tenant": "acme", "deadline": None})
    async with Consumer(settings, [topic], None) as cons:
        (rec,) = await drain(cons, 1)
    assert rec.key == b"k" and rec.headers == {"tenant": "acme"} and len(rec.value or b"") == size
