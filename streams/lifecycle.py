"""The lifecycle every client and agent shares: explicit ``async start()/stop()`` and ``async with``.

Constructors do no network I/O (docs/architecture.md, "Code layout and contracts"); ``start()``
connects, ``stop()`` releases, and a ``Service`` is its own async context manager.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer


T = TypeVar("T")
RECANCEL_S = 1.0  # a task still running this long after its cancellation is cancelled again


async def cancel(task: asyncio.Task[Any] | None, *, quiet: bool = False) -> None:
    """Stop a background task and wait until it has ended; its error is raised (dropped when
    ``quiet``), its own cancellation is not, the caller's own cancellation passes.

    The task is cancelled again every ``RECANCEL_S`` while it runs on: on Python 3.11 a cancellation
    that lands as an inner ``asyncio.wait_for`` completes is lost (CPython issue 86296, fixed in
    3.12; aiokafka waits that way), and a task that lost its one cancellation ran on forever, and
    its caller's ``await`` with it (docs/operations.md, "Stopping")."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=RECANCEL_S)
    if not task.cancelled() and task.exception() is not None and not quiet:
        raise task.exception()  # type: ignore[misc]


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """``cancel`` each of ``tasks`` (together), dropping their errors."""
    await asyncio.gather(*(cancel(t, quiet=True) for t in tasks))


async def bounded(aw: Awaitable[T], timeout_s: float) -> T:
    """``await aw``, or ``TimeoutError`` after ``timeout_s``: a deadline that holds even when the
    work loses its cancellation (``cancel``), where ``asyncio.timeout`` around it would then never
    fire again. ``aw`` runs as a task of its own, cancelled (and waited for) at the deadline or when
    the caller is cancelled."""
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait([task], timeout=timeout_s)
    finally:
        if not task.done():
            await cancel(task, quiet=True)
    if not done:
        raise TimeoutError
    return task.result()


async def within(aw: Awaitable[object], timeout_s: float) -> bool:
    """``await aw`` for at most ``timeout_s``: True when it ended in time. Python 3.11's
    ``asyncio.wait_for`` can lose the caller's cancellation (see ``cancel``); ``asyncio.timeout``
    does not."""
    try:
        async with asyncio.timeout(timeout_s):
            await aw
    except TimeoutError:
        return False
    return True


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()`` without aiokafka's leak: a fetch cut off in its retry back-off (the broker
    gone) re-raises its cancellation out of ``stop()``, which skipped the rest of a shutdown (a
    scoring worker's producers, a registry's reader). The caller's own cancellation still passes."""
    await unleaked(consumer.stop)


async def unleaked(stop: Callable[[], Awaitable[object]]) -> None:
    """``await stop()``, dropping a cancellation that is not the caller's (see ``stop_consumer``)."""
    try:
        await stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


class Service:
    """Base of things that are started and stopped; subclasses implement ``start``/``stop``."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
