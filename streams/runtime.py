"""Process entry helpers: uvloop event loop, logging, graceful stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")
log = logging.getLogger(__name__)


# What a partition created a moment ago answers until its leader has taken over (aiokafka logs it at
# ERROR and retries it itself): not an error of ours, and the first thing a new user would see.
TRANSIENT = ("NotLeaderForPartitionError", "LeaderNotAvailableError", "UnknownTopicOrPartitionError")


class TransientFetchErrors(logging.Filter):
    """Drops aiokafka fetcher lines about errors it retries itself on a partition just created."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (text.startswith("Failed fetch offsets") and any(e in text for e in TRANSIENT))


class RoutineRebalance(logging.Filter):
    """aiokafka warns on each heartbeat during a rebalance, which is routine (a worker joins or
    leaves): logged as INFO, so ``make demo`` and ``aiaas serve`` at WARNING do not show it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and record.getMessage().endswith("because it is rebalancing"):
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger().isEnabledFor(logging.INFO)
        return True


def setup_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("AIAAS_LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    fetcher = logging.getLogger("aiokafka.consumer.fetcher")
    if not any(isinstance(f, TransientFetchErrors) for f in fetcher.filters):
        fetcher.addFilter(TransientFetchErrors())
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    if not any(isinstance(f, RoutineRebalance) for f in coordinator.filters):
        coordinator.addFilter(RoutineRebalance())


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop (never ``get_event_loop()``: uvloop 0.22+ raises without a loop)."""
    return uvloop.run(main)


class Interrupt:
    """A stop signal's handler: it cancels ``task``, and again every ``every_s`` until the task
    has ended or its clean-up has begun (``cleaning``). One cancellation can be lost on Python 3.11
    (``aiaas.streams.lifecycle.cancel``): a SIGTERM that was lost so left the process running, and a
    job's processes with it (docs/operations.md, "Stopping")."""

    def __init__(self, task: asyncio.Task[Any], every_s: float = 5.0) -> None:
        self.task, self.every_s = task, every_s
        self.cleaning = False
        self.sent = 0

    def __call__(self) -> None:
        if self.task.done() or self.cleaning:
            return
        self.sent += 1
        self.task.cancel()
        asyncio.get_running_loop().call_later(self.every_s, self._again, self.sent)

    def _again(self, sent: int) -> None:
        if self.sent == sent and not (self.task.done() or self.cleaning):  # the cancellation was lost
            log.warning("still running %.0fs after the stop signal: cancelling it again", self.every_s)
            self()


async def until_signalled(work: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` until it ends or SIGINT/SIGTERM arrives, then call ``stop`` once."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work())
    interrupt = Interrupt(task)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await stop()
