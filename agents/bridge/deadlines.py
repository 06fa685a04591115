"""Per-request deadlines checked by one sweeper instead of a timer per request.

Every request body is read under a deadline (``body_timeout_s``). ``asyncio.timeout`` schedules
and cancels a loop timer per request (~5 us under uvloop, 2% of the bridge's CPU per call); here a
request registers its task and deadline in a dict (~0.3 us) and one sweeper, every ``every_s``,
cancels the tasks whose deadline passed; the cancel is answered as ``TimeoutError`` where the
deadline was set (``Watch.__exit__``), never confused with a cancel from elsewhere. Deadlines are
late by at most ``every_s``. With no deadline registered the sweeper waits on an event, set by the
first ``watch`` after the dict went empty: no wake-ups at rest (issue 18 item 5).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiaas.streams.lifecycle import Service, cancel


class Deadlines(Service):
    def __init__(self, every_s: float = 0.25) -> None:
        self.every_s = every_s
        self._due: dict[asyncio.Task[Any], float] = {}  # task -> deadline (loop time)
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._pending = asyncio.Event()  # set while a deadline may be registered

    async def start(self) -> None:
        self._ensure()

    async def stop(self) -> None:
        await cancel(self._sweeper)
        self._sweeper = None

    def watch(self, seconds: float) -> Watch:
        """``with deadlines.watch(s):`` raises TimeoutError once ``s`` seconds have passed inside."""
        return Watch(self, seconds)

    def _ensure(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="bridge-deadlines")

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._due:  # idle: sleep until a request registers a deadline
                self._pending.clear()
                await self._pending.wait()
            await asyncio.sleep(self.every_s)
            now = loop.time()
            for task in [t for t, due in self._due.items() if due <= now and t not in self._expired]:
                self._expired.add(task)
                task.cancel()


class Watch:
    """One deadline around a block (a class, not a generator: it runs on every request)."""

    __slots__ = ("_deadlines", "_seconds", "_task")

    def __init__(self, deadlines: Deadlines, seconds: float) -> None:
        self._deadlines = deadlines
        self._seconds = seconds
        self._task: asyncio.Task[Any] | None = None

    def __enter__(self) -> None:
        task = self._task = asyncio.current_task()
        if task is not None:
            d = self._deadlines
            d._ensure()
            if not d._due:
                d._pending.set()
            d._due[task] = task.get_loop().time() + self._seconds

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        task, d = self._task, self._deadlines
        if task is None:
            return
        del d._due[task]
        if task not in d._expired:
            return
        d._expired.discard(task)
        task.uncancel()  # our cancel is answered here (or was swallowed inside): not the caller's
        if kind is asyncio.CancelledError and not task.cancelling():
            raise TimeoutError from None
