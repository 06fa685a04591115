"""Where a request's answer goes (docs/wire-protocol.md): its ``reply-to`` topic (an entry of a reply
frame for a framed request, a single OIP record for an OIP one), the model's results topic for
stream records, and the dead letters for errors.

The worker commits a poll's offsets only after every reply's ack (``Outbox.sent``). A reply that
cannot be made or delivered (NaN in JSON, over ``max_reply_bytes``, refused by the broker) is its
requests' failure alone, never the worker's: an error reply and a dead letter with the reason.
Replies over the chunk size go in chunks (``aiaas.streams.chunking``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError

from aiaas.agents.inference import blocks, replies
from aiaas.agents.inference.batcher import Result, Work
from aiaas.agents.inference.breather import Breather
from aiaas.agents.inference.intake import whole
from aiaas.agents.inference.outbox import Outbox, Owners, Sent
from aiaas.agents.inference.sealing import WorkerSealing
from aiaas.schemas.errors import AiaasError, DeadlineExceeded, ErrorCode, NotFound, TooLarge
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams import metrics as m
from aiaas.streams.dlq import DeadLetters
from aiaas.streams.metadata import partition_count
from aiaas.streams.producer import Producer
from aiaas.streams.record import Record
from aiaas.streams.settings import MIB

log = logging.getLogger(__name__)
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)


def unanswerable(exc: BaseException) -> AiaasError:
    """The error a request gets when its reply could not be made or delivered."""
    if isinstance(exc, AiaasError):
        return exc
    if isinstance(exc, _TOO_LARGE):
        return TooLarge("reply over the record limit of its topic", detail=str(exc)[:300])
    return AiaasError("reply could not be produced", code=ErrorCode.INTERNAL,
                      detail=f"{type(exc).__name__}: {exc}"[:300])


class Replier:
    def __init__(self, model: str, producer: Producer, results_topic: str, dead_letters: DeadLetters,
                 stats: Counter[str], *, chunk_bytes: int = 4 * MIB, max_reply_bytes: int = 64 * MIB,
                 breathe: Breather | None = None, sealing: WorkerSealing | None = None) -> None:
        self.model, self.producer, self.results_topic = model, producer, results_topic
        self.dead_letters, self.stats = dead_letters, stats
        self.chunk_bytes, self.max_reply_bytes = chunk_bytes, max_reply_bytes
        self.breathe = breathe or Breather()  # a poll's replies may take seconds of JSON
        self.sealing = sealing  # replies to sealed requests are sealed under the request's key
        self._reply_topics: dict[str, int | None] = {}  # reply topic -> fixed partition (1-partition topics)

    async def reply(self, w: Work, outputs: dict[str, Any], sent: Outbox) -> None:
        """The successful reply (an entry of rows for a block)."""
        rows = w.count > 1
        entry = replies.ok_entry(self.model, w.model.version, w.ids, blocks.stacked(w, outputs) if rows else
                                 outputs, w.record.headers, rows=rows, parameters=w.parameters)
        await self.send(w.record, w.reply_to, entry, sent, response_id=w.response_id)

    async def reply_group(self, works: Sequence[Work], results: Sequence[Result], sent: Outbox) -> int:
        """The replies (or error replies) of one onnxruntime call; returns how many succeeded. A block
        is answered with one entry of rows (request by request when that would be too big)."""
        ok = 0
        for w, res in zip(works, results, strict=True):
            await self.breathe()
            if isinstance(res, AiaasError):
                await self.fail(w.record, w.ids, res, sent)
                continue
            try:
                if w.count > 1 and sum(o.nbytes for o in res.values()) > self.max_reply_bytes // 2:
                    ok += await self.reply_group(blocks.explode(w), blocks.row_results(w, res), sent)
                    continue
                await self.reply(w, res, sent)
            except Exception as exc:  # one reply's failure is its requests' alone
                await self.fail(w.record, w.ids, unanswerable(exc), sent)
                continue
            ok += w.count
        return ok

    async def fail(self, rec: Record, ids: Sequence[str], exc: AiaasError, sent: Outbox) -> None:
        """The requests ``ids`` of one record (one, or a block's) failed: an error reply each, one dead
        letter holding the record (none for a deadline: the requests were fine, only late). A block
        whose ids cannot be read still counts as one failed request."""
        self.stats[f"error_{exc.code.value}"] += max(1, len(ids))
        m.INFER_REQUESTS.labels(model=self.model, outcome=exc.code.value).inc(max(1, len(ids)))
        lettered = not isinstance(exc, DeadlineExceeded)
        if lettered:
            await self.dead_letters.send(whole(rec), exc)
        reply_to = rec.headers.get(h.REPLY_TO)
        for rid in ids:
            try:
                answer = replies.error_entry(self.model, rid, exc, rec.headers)
                await self.send(rec, reply_to, answer, sent, lettered=lettered)
            except Exception as err:  # the dead letter holds the request
                self.stats["error_reply_failed"] += 1
                log.warning("error reply for %s to %s not sent: %r", rid, reply_to, err)

    async def undelivered(self, owners: Owners, exc: Exception) -> None:
        """Reply records that could not be sent or that the broker refused (e.g. over the reply
        topic's record limit): their requests get an error reply, when one can still be delivered,
        and a dead letter with the reason; the poll then commits like any other."""
        err = unanswerable(exc)
        self.stats["undelivered"] += sum(len(ids) for _, ids in owners)
        log.warning("%d replies not delivered: %s %s", sum(len(ids) for _, ids in owners), err.reason,
                    err.details)
        errors = Outbox(self.send_raw, 1 << 20)
        for rec, ids in owners:
            await self.fail(rec, ids, err, errors)
        try:
            await errors.flush()
            await asyncio.gather(*errors.sent)
        except Exception as again:  # the dead letters hold the requests
            self.stats["error_reply_failed"] += 1
            log.warning("error replies not delivered either: %r", again)

    async def send(self, rec: Record, reply_to: str | None, answer: frame.Entry, sent: Outbox, *,
                   lettered: bool = False, response_id: str | None = None) -> None:
        """Deliver one answer: to a framed request as an entry of the poll's reply frame, else as the
        single OIP JSON record it stands for (a big one written off the loop). ``lettered``: ``rec``
        is dead-lettered already (an error reply), not again for a missing reply topic."""
        single = None
        if not frame.is_frame(rec.headers):
            big = sum(a.size for a in answer.tensors.values()) > replies.LARGE_JSON
            single = await asyncio.to_thread(replies.single, answer, response_id) if big else \
                replies.single(answer, response_id)
        size = answer.nbytes if single is None else len(single[0])
        if size > self.max_reply_bytes:
            raise TooLarge("reply over the worker's size limit (max_reply_bytes)", size=size,
                           limit=self.max_reply_bytes)
        topic, partition = self.results_topic, None  # a stream record: its result goes to the results topic
        if reply_to is not None:
            found = await self._partition(rec, reply_to, letter=not lettered)
            if found is False:
                return
            topic, partition = reply_to, found
        if single is None:
            await sent.add(topic, partition, answer, (rec, answer.ids))
            return
        key = rec.key if reply_to is None else answer.id.encode()
        headers = h.encode(single[1])
        if (data_key := rec.headers.get(h.DATA_KEY)) is not None:
            headers.append((h.DATA_KEY, data_key.encode()))
        sent.track(await self.send_raw(topic, single[0], key, headers, partition), ((rec, answer.ids),))

    async def _partition(self, rec: Record, reply_to: str,
                         letter: bool = True) -> int | Literal[False] | None:
        """The partition replies to ``reply_to`` go to (None: by key); False when the topic does not
        exist (then ``rec`` is dead-lettered, when ``letter``)."""
        if reply_to not in self._reply_topics:
            parts = await partition_count(self.producer.raw.client, reply_to)
            if parts == 0:
                self.stats["no_reply_topic"] += 1
                if letter:
                    await self.dead_letters.send(rec, NotFound("reply-to topic does not exist",
                                                               reply_to=reply_to))
                return False
            self._reply_topics[reply_to] = 0 if parts == 1 else None  # one partition: skip hashing the key
        return self._reply_topics[reply_to]

    async def send_raw(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]],
                       partition: int | None = None) -> Sent:
        """Send one record (sealed when its headers name a data key); over ``chunk_bytes`` in chunks,
        over ``max_reply_bytes`` not at all (413)."""
        if self.sealing is not None:
            value = self.sealing.seal_out(value, headers)
        if len(value) <= self.chunk_bytes:
            fut: Sent = await self.producer.raw.send(topic, value, key=key, headers=headers,
                                                     partition=partition)
            return fut
        if len(value) > self.max_reply_bytes:
            raise TooLarge("reply over the worker's size limit (max_reply_bytes)", size=len(value),
                           limit=self.max_reply_bytes)
        self.stats["chunked_replies"] += 1
        return await self.producer.send(topic, value, key=key, headers=headers, partition=partition)
