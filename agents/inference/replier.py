"""Where a request's answer goes: its ``reply-to`` topic (single or batched reply record), the
model's results topic for stream records, and the dead letters for errors.

Every send's ack future lands in the poll's ``Outbox.sent``: the worker commits the poll's offsets
only after all of them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

from aiokafka.structs import RecordMetadata

from agents.inference import replies
from agents.inference.batcher import Result, Work
from agents.inference.outbox import Outbox, ReplyHeaders
from schemas.errors import AiaasError, DeadlineExceeded, NotFound
from streams import headers as h
from streams import metrics as m
from streams.client import partition_count
from streams.dlq import DeadLetters
from streams.producer import Producer
from streams.record import Record
from streams.replywire import REPLY_BATCH

Sent = asyncio.Future[RecordMetadata]


class Replier:
    def __init__(self, model: str, producer: Producer, results_topic: str, dead_letters: DeadLetters,
                 stats: Counter[str]) -> None:
        self.model, self.producer, self.results_topic = model, producer, results_topic
        self.dead_letters, self.stats = dead_letters, stats
        self._binary = replies.BinaryResponses(model)
        self._reply_topics: dict[str, int | None] = {}  # reply topic -> fixed partition (1-partition topics)

    async def reply(self, w: Work, outputs: dict[str, Any], sent: Outbox,
                    cut: tuple[bytes, bytes] | None = None) -> None:
        """The successful reply, in the request's encoding (``cut``: see ``BinaryResponses.encode``)."""
        if w.binary:
            value, headers = self._binary.encode(w.model.version, w.request_id, w.response_id, outputs,
                                                 w.record.headers, cut)
        else:
            value, headers = replies.response(
                self.model, w.model.version, w.request_id, w.response_id, outputs,
                binary=False, request_headers=w.record.headers,
            )
        await self.send(w.record, w.request_id, w.reply_to, value, headers, sent)

    async def reply_group(self, works: Sequence[Work], results: Sequence[Result], sent: Outbox) -> int:
        """The replies (or error replies) of one onnxruntime call; returns how many succeeded. The JSON
        around a binary reply's id is looked up once per output layout, not once per reply."""
        cuts: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}
        ok = 0
        for w, res in zip(works, results, strict=True):
            if isinstance(res, AiaasError):
                await self.fail(w.record, w.request_id, res, sent)
                continue
            ok += 1
            cut = None
            if w.binary:  # one version per group: names and shapes fix the layout (dtypes are the model's)
                layout = tuple([(n, a.shape) for n, a in res.items()])
                if layout not in cuts:
                    cuts[layout] = self._binary.cut(w.model.version, res)
                cut = cuts[layout]
            await self.reply(w, res, sent, cut)
        return ok

    async def fail(self, rec: Record, rid: str, exc: AiaasError, sent: Outbox) -> None:
        """The error reply, and a dead letter (but for a deadline: the request was fine, only late)."""
        self.stats[f"error_{exc.code.value}"] += 1
        m.INFER_REQUESTS.labels(model=self.model, outcome=exc.code.value).inc()
        if not isinstance(exc, DeadlineExceeded):
            await self.dead_letters.send(rec, exc)
        value, headers = replies.error(self.model, rid, exc, request_headers=rec.headers)
        await self.send(rec, rid, rec.headers.get(h.REPLY_TO), value, headers, sent)

    async def send(self, rec: Record, rid: str, reply_to: str | None, value: bytes,
                   headers: ReplyHeaders, sent: Outbox) -> None:
        if reply_to is None:  # a stream record: the result goes to the results topic, keyed alike
            sent.sent.append(await self.send_raw(self.results_topic, value, rec.key, replies.wire(headers)))
            return
        if reply_to not in self._reply_topics:
            parts = await partition_count(self.producer.raw.client, reply_to)
            if parts == 0:
                self.stats["no_reply_topic"] += 1
                missing = NotFound("reply-to topic does not exist", reply_to=reply_to)
                await self.dead_letters.send(rec, missing)
                return
            self._reply_topics[reply_to] = 0 if parts == 1 else None  # one partition: skip hashing the key
        partition = self._reply_topics[reply_to]
        if rec.headers.get(REPLY_BATCH) == "1" and sent.fits(value):
            await sent.add(reply_to, partition, headers, value)
        else:
            sent.sent.append(await self.send_raw(reply_to, value, rid.encode(), replies.wire(headers),
                                                 partition))

    async def send_raw(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]],
                       partition: int | None = None) -> Sent:
        fut: Sent = await self.producer.raw.send(topic, value, key=key, headers=headers, partition=partition)
        return fut
