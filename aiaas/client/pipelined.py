"""``InferenceClient.infer_many``: a window of requests in flight, replies yielded as they come.

A feeder task builds and queues requests while the window has room (as entries of frames,
``aiaas.client.tickbatches``: numeric ones of one layout as rows of one entry); each reply's
callback frees a slot and queues ``(index, result or InferenceError)``; the caller's ``async for``
drains that queue. Errors are yielded in place of results, so one bad request does not end the
stream; a failure to feed (e.g. an unknown model) is raised once everything already sent has been
yielded.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Protocol

import numpy as np

from aiaas.client.slots import Slots
from aiaas.client.tickbatches import Layout, Stream, layout_of
from aiaas.client.waiting import Sink
from aiaas.schemas.errors import AiaasError, ErrorCode, InferenceError
from aiaas.streams import headers as h
from aiaas.streams.replywire import InferResult, Inputs, Reply, arrays_of

Outcome = tuple[int, InferResult | InferenceError]


class Sender(Protocol):
    """What the pipeline needs from the client (``aiaas.client.inference.InferenceClient`` is one): its
    settings and its way to send one request; the client's own state stays the client's."""

    timeout_s: float
    pack_requests: int  # > 1: requests of one layout travel as rows of one entry

    def new_id(self) -> str: ...
    async def stream(self, model: str, extra: Mapping[str, str]) -> Stream: ...
    async def submit_request(self, stream: Stream, rid: str, arrays: dict[str, np.ndarray],
                             timeout_s: float, deadline: str | None, layout: Layout | None,
                             sink: Sink) -> None: ...


class Pipeline:
    def __init__(self, client: Sender, model: str, inputs: Iterable[Inputs] | AsyncIterable[Inputs],
                 *, window: int, timeout: float | None, extra: Mapping[str, str]) -> None:
        self.client, self.model, self.inputs = client, model, inputs
        self.timeout, self.extra = timeout, extra
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
        stream = await c.stream(self.model, extra)
        timeout_s = c.timeout_s if self.timeout is None else self.timeout
        deadline, rows = extra.get(h.DEADLINE), c.pack_requests > 1
        n = 0
        async for item in _aiter(self.inputs):
            await self.room.acquire()
            try:
                arrays = arrays_of(item)
                layout = layout_of(arrays, rows)
            except AiaasError as exc:
                self._landed(n, exc)
                n += 1
                continue
            await c.submit_request(stream, c.new_id(), arrays, timeout_s, deadline, layout,
                                   functools.partial(self._landed, n))
            n += 1
        return n

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


def _code(exc: BaseException) -> ErrorCode:
    return exc.code if isinstance(exc, AiaasError) else ErrorCode.INTERNAL


async def _aiter(items: Iterable[Inputs] | AsyncIterable[Inputs]) -> AsyncIterator[Inputs]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
