"""Reading what inference workers wrote, in tests on the broker: replies (single records and reply
frames split alike) and dead letters (a model's, or any dead-letter topic's)."""

from __future__ import annotations

import asyncio

from aiaas.schemas.records import DeadLetter
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams.consumer import Consumer
from aiaas.streams.replywire import Reply, replies_of
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics


async def answers(settings: Settings, topic: str, ids: set[str],
                  records: list[list[str]] | None = None) -> tuple[dict[str, Reply], list[str]]:
    """The replies to ``ids`` on ``topic``, and the content-type of each record they came in
    (``records``, when given, gets the ids each record answered)."""
    got: dict[str, Reply] = {}
    kinds: list[str] = []
    async with Consumer(settings, [topic], None) as cons:
        async with asyncio.timeout(20):
            while not ids <= got.keys():
                for rec in await cons.getmany(timeout_ms=200):
                    kinds.append(rec.headers.get("content-type", ""))
                    batch = replies_of(rec.value, rec.headers) if frame.is_frame(rec.headers) else \
                        [Reply(rec.headers[h.CORRELATION_ID], rec.value or b"", rec.headers)]
                    got.update((r.request_id, r) for r in batch)
                    if records is not None:
                        records.append([r.request_id for r in batch])
    return got, kinds


async def dead_letters(settings: Settings, model: str, count: int) -> list[DeadLetter]:
    """The first ``count`` dead letters of ``model`` (waits up to 20 s for them)."""
    return await letters_on(settings, Topics(settings).infer_dlq(model).name, count)


async def letters_on(settings: Settings, topic: str, count: int, timeout_s: float = 20) -> list[DeadLetter]:
    """The first ``count`` dead letters on ``topic`` (waits up to ``timeout_s`` for them)."""
    async with Consumer(settings, [topic], None) as cons:
        out: list[DeadLetter] = []
        async with asyncio.timeout(timeout_s):
            while len(out) < count:
                out += [DeadLetter.from_record(r.value) for r in await cons.getmany(timeout_ms=200)]
    return out
