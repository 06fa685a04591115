"""``InferenceClient.infer_many``: a window of requests in flight, replies yielded as they come.

A feeder task encodes and submits requests while the window has room (when the client packs:
binary requests of numeric arrays as rows of request blocks, see ``aiaas.streams.blockwire``, and the
rest packed into request batch records, see aiaas.streams.batchwire); each reply's callback frees a slot and
queues ``(index, result or InferenceError)``; the caller's ``async for`` drains that queue. Errors
are yielded in place of results, so one bad request does not end the stream; a failure to feed
(e.g. an unknown model) is raised once everything already sent has been yielded.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any, Protocol

import numpy as np

from aiaas.client.tickbatches import RowStream, Slots
from aiaas.client.waiting import Sink
from aiaas.schemas.errors import AiaasError, ErrorCode, InferenceError
from aiaas.streams import blockwire
from aiaas.streams import headers as h
from aiaas.streams.replywire import InferResult, Inputs, Reply, encode_request
from aiaas.streams.tensorcodec import Encoded

Outcome = tuple[int, InferResult | InferenceError]
Headers = tuple[tuple[str, bytes], ...]


class Sender(Protocol):
    """What the pipeline needs from the client (``aiaas.client.inference.InferenceClient`` is one): its
    settings and the ways to send one request; the client's own state stays the client's."""

    timeout_s: float
    batch_replies: bool  # ask for batched reply records
    pack_requests: int  # > 1: pack requests into request batch records and blocks
    pack_bytes: int

    def new_id(self) -> str: ...
    async def route(self, model: str) -> tuple[str, int]: ...
    def shared_headers(self, extra: Mapping[str, str]) -> Headers: ...
    async def submit(self, model: str, value: bytes, headers: Mapping[str, str], *,
                     request_id: str | None = None,
                     timeout: float | None = None,  # noqa: ASYNC109 - also the deadline header
                     batched: bool = False) -> asyncio.Future[Reply]: ...
    async def submit_entry(self, topic: str, partitions: int, shared: Headers, enc: Encoded, rid: str,
                           timeout_s: float, deadline: str | None) -> asyncio.Future[Reply]: ...
    async def submit_row(self, stream: RowStream, layout: tuple[Any, ...], rid: str,
                         arrays: dict[str, np.ndarray[Any, Any]], timeout_s: float, sink: Sink) -> None: ...


class Pipeline:
    def __init__(self, client: Sender, model: str, inputs: Iterable[Inputs] | AsyncIterable[Inputs],
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
        topic, partitions = await c.route(self.model)
        timeout_s = c.timeout_s if self.timeout is None else self.timeout
        shared = c.shared_headers(extra)
        stream = RowStream(topic, partitions, (*shared, _ACCEPT_BLOCKS) if c.batch_replies else shared,
                           timeout_s, extra.get(h.DEADLINE))
        rows = c.pack_requests > 1 and self.binary
        n = 0
        async for item in _aiter(self.inputs):
            await self.room.acquire()
            rid = c.new_id()
            row = _row_of(item, c.pack_bytes // 2) if rows else None
            if row is not None:
                await c.submit_row(stream, row[1], rid, row[0], timeout_s, functools.partial(self._landed, n))
                n += 1
                continue
            enc = encode_request(item, request_id=rid, binary=self.binary)
            if c.pack_requests > 1 and len(enc.value) <= c.pack_bytes // 2:
                deadline = extra.get(h.DEADLINE)
                fut = await c.submit_entry(topic, partitions, shared, enc, rid, timeout_s, deadline)
            else:
                fut = await c.submit(self.model, enc.value, {**enc.headers, **extra}, request_id=rid,
                                     timeout=self.timeout, batched=c.batch_replies)
            fut.add_done_callback(functools.partial(self._finish, n))
            n += 1
        return n

    def _finish(self, i: int, fut: asyncio.Future[Reply]) -> None:
        exc = fut.exception()
        self._landed(i, fut.result() if exc is None else exc)

    def _landed(self, i: int, outcome: Reply | BaseException) -> None:
        """Request ``i`` is answered (or failed): free its slot and queue its result or error."""
        self.room.release()
        self.arrived.set()
        if isinstance(outcome, BaseException):
            err = outcome if isinstance(outcome, InferenceError) else InferenceError(str(outcome),
                                                                                     code=_code(outcome))
            self.done.append((i, err))
            return
        try:
            self.done.append((i, outcome.result()))
        except AiaasError as exc:
            self.done.append((i, exc if isinstance(exc, InferenceError)
                              else InferenceError(exc.reason, code=exc.code, **exc.details)))


_ACCEPT_BLOCKS = (blockwire.ACCEPT, b"1")


def _row_of(item: Inputs, max_bytes: int) -> tuple[dict[str, np.ndarray], tuple[Any, ...]] | None:
    """The arrays of a request that can travel as a row of a request block, and their layout
    (names, dtypes, shapes); None when it cannot."""
    if not isinstance(item, Mapping):
        return None
    arrays: dict[str, np.ndarray] = {}
    layout = []
    size = 0
    for name, a in item.items():
        if not isinstance(a, np.ndarray) or not blockwire.blockable(a):
            return None
        arrays[name] = a
        layout.append((name, a.dtype, a.shape))
        size += a.nbytes
    return (arrays, tuple(layout)) if arrays and size <= max_bytes else None


def _code(exc: BaseException) -> ErrorCode:
    return exc.code if isinstance(exc, AiaasError) else ErrorCode.INTERNAL


async def _aiter(items: Iterable[Inputs] | AsyncIterable[Inputs]) -> AsyncIterator[Inputs]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
