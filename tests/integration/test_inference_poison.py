"""Replies that cannot be delivered, on the real broker, with an in-process worker: a reply topic
whose record limit is below the reply (the broker refuses it: the ack future fails), a reply-to
topic that does not exist, and a model nobody serves yet. Each fails its request alone, with an
error reply (or a dead letter) that says why, and the worker goes on serving."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from aiaas.client.inference import InferenceClient, InferenceError, encode_request
from aiaas.registry.store import Registry
from aiaas.schemas.errors import NotFound
from aiaas.streams import headers as h
from aiaas.streams.admin import Admin
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics, TopicSpec
from tests.inferreads import dead_letters
from tests.poisonmodels import expected, log_tiled
from tests.workers import running_worker


async def publish(settings: Settings) -> None:
    async with Registry(settings) as reg:
        await reg.publish("poison", log_tiled(), stage="production")


async def test_a_reply_the_reply_topic_refuses_gets_a_413_and_the_worker_goes_on(settings: Settings) -> None:
    await publish(settings)
    cid = "small-replies"
    name = Topics(settings).replies(cid).name
    async with Admin(settings) as admin:  # made elsewhere, with a record limit below this reply
        await admin.ensure_topics([TopicSpec(name=name, config={"max.message.bytes": str(64 * 1024)})])
    big = np.full((1, 30), 2.0, np.float32)  # a 120 KB binary reply
    async with running_worker(settings, model="poison") as worker, \
            InferenceClient(settings, client_id=cid) as client:
        with pytest.raises(InferenceError) as refused:
            await client.infer("poison", {"x": big}, binary=True, timeout=30)
        assert refused.value.status_code == 413
        assert refused.value.reason == "reply over the record limit of its topic"
        ok = await client.infer("poison", {"x": np.full((1, 2), 2.0, np.float32)}, binary=True, timeout=30)
        np.testing.assert_allclose(ok.outputs["y"], expected(np.full((1, 2), 2.0, np.float32)), rtol=1e-6)
        assert worker.stats["undelivered"] == 1
    [letter] = await dead_letters(settings, "poison", 1)
    assert letter.code == "too_large" and letter.reason == "reply over the record limit of its topic"


async def test_a_request_whose_reply_topic_is_missing_is_dead_lettered_with_the_reason(
        settings: Settings) -> None:
    await publish(settings)
    missing = settings.topic("replies.nobody-reads-this")
    topic = Topics(settings).infer_requests("poison").name
    async with running_worker(settings, model="poison") as worker, Producer(settings) as producer, \
            InferenceClient(settings) as client:
        # fine but unanswerable, and bad input too: one dead letter each (three ids in three letters)
        for rid, name in (("lost", "x"), ("lost-bad", "wrong"), ("lost-again", "x")):
            enc = encode_request({name: np.ones((1, 1), np.float32)}, request_id=rid)
            headers = {**enc.headers, h.CORRELATION_ID: rid, h.REPLY_TO: missing}
            await (await producer.send(topic, enc.value, key=rid, headers=headers, partition=0))
        letters = {d.headers[h.CORRELATION_ID]: d for d in await dead_letters(settings, "poison", 3)}
        assert {rid: d.reason for rid, d in letters.items()} == {
            "lost": "reply-to topic does not exist", "lost-bad": "missing input",
            "lost-again": "reply-to topic does not exist"}
        assert letters["lost"].code == "not_found" and letters["lost"].details == {"reply_to": missing}
        ok = await client.infer("poison", {"x": np.ones((1, 1), np.float32)}, timeout=30)  # still serving
        assert ok.outputs["y"].shape == (1, 1000)
        assert worker.stats["no_reply_topic"] == 3


async def test_the_client_makes_its_reply_topic_and_an_unserved_model_fails_at_once(
        settings: Settings) -> None:
    async with InferenceClient(settings) as client:
        async with Admin(settings) as admin:
            assert client.reply_topic in await admin.list_topics()
        async with asyncio.timeout(10):  # an answer from the broker's metadata, not the 30 s timeout
            with pytest.raises(NotFound) as unknown:
                await client.infer("nobody-serves-this", {"x": np.ones((1, 1), np.float32)})
    assert "no inference worker has served it yet" in unknown.value.reason
    assert unknown.value.details["hint"] == "aiaas worker inference --model nobody-serves-this"
    assert unknown.value.details["topic"] == settings.topic("infer.nobody-serves-this.requests")
