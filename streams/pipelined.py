"""``InferenceClient.infer_many``: a window of requests in flight, replies yielded as they come.

A feeder task encodes and submits requests while the window has room (when the client packs:
binary requests of numeric arrays as rows of request blocks, see ``streams.blockwire``, and the
rest packed into request batch records, see ``streams.batchwire``); each reply's callback frees a slot and
queues ``(index, result or InferenceError)``; the caller's ``async for`` drains that queue. Errors
are yielded in place of results, so one bad request does not end the stream; a failure to feed
(e.g. an unknown model) is raised once everything already sent has been yielded.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from schemas.errors import AiaasError, ErrorCode
from streams import blockwire
from streams import headers as h
from streams.replywire import InferenceError, InferResult, Inputs, Reply, encode_request
from streams.tickbatches import Slots

if TYPE_CHECKING:
    from streams.client import InferenceClient

Outcome = tuple[int, InferResult | InferenceError]


class Pipeline:
    def __init__(self, client: InferenceClient, model: str, inputs: Iterable[Inputs] | AsyncIterable[Inputs],
                 *, window: int, timeout: float | None, extra: Mapping[str, str], binary: bool) -> None:
        self.client, self.model, self.inputs = client, model, inputs
        self.timeout, self.extra, self.binary = timeout, extra, binary
        self.done: deque[Outcome] = deque()
        self.arrived = asyncio.Event()
        self.room = Slots(window)

    async def results(self) -> AsyncIterator[Outcome]:
        feeder = asyncio.create_task(self._feed())
        feeder.add_done_callback(lambda _: self.arrived.set())
        yielded = 0
        try:
            while True:
                while self.done:
                    yielded += 1
                    yield self.done.popleft()
                if feeder.done() and yielded >= feeder.result():  # re-raises a feeding failure
                    return
                self.arrived.clear()
                if not self.done and not (feeder.done() and yielded >= feeder.result()):
                    await self.arrived.wait()
        finally:
            feeder.cancel()

    async def _feed(self) -> int:
        c, extra = self.client, self.extra
        topic, partitions = await c._route(self.model)
        timeout_s = c.timeout_s if self.timeout is None else self.timeout
        shared = c._shared_headers(extra)
        block_shared = (*shared, _ACCEPT_BLOCKS) if c.batch_replies else shared
        rows = c.pack_requests > 1 and self.binary
        n = 0
        async for item in _aiter(self.inputs):
            await self.room.acquire()
            rid = c.new_id()
            arrays = _rows_of(item, c.pack_bytes // 2) if rows else None
            if arrays is not None:
                fut = await c._submit_row(topic, partitions, block_shared, rid, arrays, timeout_s,
                                          extra.get(h.DEADLINE))
                fut.add_done_callback(functools.partial(self._finish, n))
                n += 1
                continue
            enc = encode_request(item, request_id=rid, binary=self.binary)
            if c.pack_requests > 1 and len(enc.value) <= c.pack_bytes // 2:
                deadline = extra.get(h.DEADLINE)
                fut = await c._submit_entry(topic, partitions, shared, enc, rid, timeout_s, deadline)
            else:
                fut = await c.submit(self.model, enc.value, {**enc.headers, **extra}, request_id=rid,
                                     timeout=self.timeout, batched=c.batch_replies)
            fut.add_done_callback(functools.partial(self._finish, n))
            n += 1
        return n

    def _finish(self, i: int, fut: asyncio.Future[Reply]) -> None:
        self.room.release()
        self.arrived.set()
        exc = fut.exception()
        if exc is not None:
            err = exc if isinstance(exc, InferenceError) else InferenceError(str(exc), code=_code(exc))
            self.done.append((i, err))
            return
        try:
            self.done.append((i, fut.result().result()))
        except AiaasError as exc2:
            self.done.append((i, exc2 if isinstance(exc2, InferenceError)
                              else InferenceError(exc2.reason, code=exc2.code, **exc2.details)))


_ACCEPT_BLOCKS = (blockwire.ACCEPT, b"1")


def _rows_of(item: Inputs, max_bytes: int) -> dict[str, np.ndarray] | None:
    """The arrays of a request that can travel as a row of a request block, else None."""
    if not isinstance(item, Mapping):
        return None
    arrays: dict[str, np.ndarray] = {}
    size = 0
    for name, a in item.items():
        if not isinstance(a, np.ndarray) or not blockwire.blockable(a):
            return None
        arrays[name] = a
        size += a.nbytes
    return arrays if arrays and size <= max_bytes else None


def _code(exc: BaseException) -> ErrorCode:
    return exc.code if isinstance(exc, AiaasError) else ErrorCode.INTERNAL


async def _aiter(items: Iterable[Inputs] | AsyncIterable[Inputs]) -> AsyncIterator[Inputs]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
