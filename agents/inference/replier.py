"""Where a request's answer goes (docs/wire-protocol.md): its ``reply-to`` topic (an entry of a reply
frame for a framed request, a single OIP record for an OIP one), the model's results topic for
stream records, and the dead letters for errors.

The worker commits a poll's offsets only after every reply's ack (``Outbox.sent``). A reply that
cannot be made or delivered (NaN in JSON, over ``max_reply_bytes``, refused by the broker) is its
requests' failure alone, never the worker's: an error reply and a dead letter with the reason.
Sending the records (reply topics, sealing, chunks) is ``Delivery``'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError

from aiaas.agents.inference import blocks, replies
from aiaas.agents.inference.batcher import Result, Work
from aiaas.agents.inference.breather import Breather
from aiaas.agents.inference.delivery import Delivery
from aiaas.agents.inference.intake import whole
from aiaas.agents.inference.outbox import Outbox, Owners
from aiaas.schemas.errors import AiaasError, DeadlineExceeded, ErrorCode, TooLarge
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams import metrics as m
from aiaas.streams.dlq import DeadLetters
from aiaas.streams.producer import Producer
from aiaas.streams.record import Record

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


class Replier(Delivery):
    def __init__(self, model: str, producer: Producer, results_topic: str, dead_letters: DeadLetters,
                 stats: Counter[str], *, breathe: Breather | None = None, **delivery: Any) -> None:
        super().__init__(producer, dead_letters, stats, **delivery)
        self.model, self.results_topic = model, results_topic
        self.breathe = breathe or Breather()  # a poll's replies may take seconds of JSON

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
                    ok += await self.reply_group(blocks.explode(w), blocks.rows_of(w, res), sent)
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
