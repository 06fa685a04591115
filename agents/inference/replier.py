"""Where a request's answer goes: its ``reply-to`` topic (single or batched reply record), the
model's results topic for stream records, and the dead letters for errors.

Every send's ack future lands in the poll's ``Outbox.sent``: the worker commits the poll's offsets
only after all of them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from aiokafka.structs import RecordMetadata

from agents.inference import blocks, replies
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
        around a binary reply's id is looked up once per output layout, not once per reply; request
        blocks are answered with reply blocks (one per reply topic and layout) when their senders
        read them, else request by request."""
        cuts: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}
        gathered: dict[tuple[Any, ...], tuple[list[Work], list[dict[str, Any]]]] = {}
        ok = 0
        for w, res in zip(works, results, strict=True):
            if isinstance(res, AiaasError):
                await self.fail_work(w, res, sent)
                continue
            if w.ids is not None:
                if blocks.accepts_blocks(w) and blocks.blockable(res):
                    into = gathered.setdefault(blocks.reply_key(w, res), ([], []))
                    into[0].append(w)
                    into[1].append(res)
                else:
                    ok += await self.reply_group(blocks.explode(w), blocks.row_results(w, res), sent)
                continue
            ok += 1
            cut = None
            if w.binary:  # one version per group: names and shapes fix the layout (dtypes are the model's)
                layout = tuple([(n, a.shape) for n, a in res.items()])
                if layout not in cuts:
                    cuts[layout] = self._binary.cut(w.model.version, res)
                cut = cuts[layout]
            await self.reply(w, res, sent, cut)
        for block_works, outputs in gathered.values():
            ok += await self._reply_blocks(block_works, outputs, sent)
        return ok

    async def _reply_blocks(self, works: list[Work], outputs: list[dict[str, Any]], sent: Outbox) -> int:
        """One reply block for request blocks of one reply topic and layout (request by request when
        it would be too big for one record)."""
        w = works[0]
        value, headers = blocks.reply_block(self.model, w.model.version, works, outputs)
        assert w.reply_to is not None
        partition = await self._partition(w.record, w.reply_to)
        if partition is False:
            return 0
        if not sent.fits(value):
            return sum([await self.reply_group(blocks.explode(x), blocks.row_results(x, o), sent)
                        for x, o in zip(works, outputs, strict=True)])
        sent.sent.append(await self.send_raw(w.reply_to, value, w.request_id.encode(), headers, partition))
        return sum(x.count for x in works)

    async def fail_work(self, w: Work, exc: AiaasError, sent: Outbox) -> None:
        """``fail`` for a request or a request block."""
        if w.ids is None:
            await self.fail(w.record, w.request_id, exc, sent)
        else:
            await self.fail_block(w.record, w.ids, exc, sent)

    async def fail(self, rec: Record, rid: str, exc: AiaasError, sent: Outbox) -> None:
        """The error reply, and a dead letter (but for a deadline: the request was fine, only late)."""
        await self.fail_block(rec, [rid], exc, sent)

    async def fail_block(self, rec: Record, ids: Sequence[str], exc: AiaasError, sent: Outbox) -> None:
        """``fail`` for the requests ``ids`` of one record (a request block): an error reply each, one
        dead letter holding the record (none for a deadline). A block whose ids cannot be read still
        counts as one failed request."""
        self.stats[f"error_{exc.code.value}"] += max(1, len(ids))
        m.INFER_REQUESTS.labels(model=self.model, outcome=exc.code.value).inc(max(1, len(ids)))
        if not isinstance(exc, DeadlineExceeded):
            await self.dead_letters.send(rec, exc)
        reply_to = rec.headers.get(h.REPLY_TO)
        for rid in ids:
            value, headers = replies.error(self.model, rid, exc, request_headers=rec.headers)
            await self.send(rec, rid, reply_to, value, headers, sent)

    async def send(self, rec: Record, rid: str, reply_to: str | None, value: bytes,
                   headers: ReplyHeaders, sent: Outbox) -> None:
        if reply_to is None:  # a stream record: the result goes to the results topic, keyed alike
            sent.sent.append(await self.send_raw(self.results_topic, value, rec.key, replies.wire(headers)))
            return
        partition = await self._partition(rec, reply_to)
        if partition is False:
            return
        if rec.headers.get(REPLY_BATCH) == "1" and sent.fits(value):
            await sent.add(reply_to, partition, headers, value)
        else:
            sent.sent.append(await self.send_raw(reply_to, value, rid.encode(), replies.wire(headers),
                                                 partition))

    async def _partition(self, rec: Record, reply_to: str) -> int | Literal[False] | None:
        """The partition replies to ``reply_to`` go to (None: by key); False when the topic does not
        exist (then ``rec`` is dead-lettered)."""
        if reply_to not in self._reply_topics:
            parts = await partition_count(self.producer.raw.client, reply_to)
            if parts == 0:
                self.stats["no_reply_topic"] += 1
                missing = NotFound("reply-to topic does not exist", reply_to=reply_to)
                await self.dead_letters.send(rec, missing)
                return False
            self._reply_topics[reply_to] = 0 if parts == 1 else None  # one partition: skip hashing the key
        return self._reply_topics[reply_to]

    async def send_raw(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]],
                       partition: int | None = None) -> Sent:
        fut: Sent = await self.producer.raw.send(topic, value, key=key, headers=headers, partition=partition)
        return fut
