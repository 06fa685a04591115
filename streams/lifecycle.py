"""The lifecycle every client and agent shares: explicit ``async start()/stop()`` and ``async with``.

Constructors do no network I/O (docs/architecture.md, "Code layout and contracts"); ``start()``
connects, ``stop()`` releases, and a ``Service`` is its own async context manager.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Stop a background task and wait until it has ended (its own CancelledError is expected)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()`` without aiokafka's leak: a fetch cut off in its retry back-off (the broker
    gone) re-raises its cancellation out of ``stop()``, which skipped the rest of a shutdown (a
    scoring worker's producers, a registry's reader). The caller's own cancellation still passes."""
    try:
        await consumer.stop()
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
