"""A turn for the event loop during long synchronous stretches of the worker (decoding a poll's
requests, encoding its replies): the consumer group's heartbeats run on the same loop, and a worker
that holds it past its session timeout (6 s, ``WorkerSettings.session_timeout_ms``) is expelled
from the group, its requests re-served by the others, who would hold their loops just as long."""

from __future__ import annotations

import asyncio
import time


class Breather:
    """``await breathe()`` between units of work: yields to the loop once ``every_s`` has passed
    since the last turn (a clock read otherwise)."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.every_s = every_s
        self._since = time.perf_counter()
        self.turns = 0

    async def __call__(self) -> None:
        now = time.perf_counter()
        if now - self._since >= self.every_s:
            self.turns += 1
            await asyncio.sleep(0)
            self._since = time.perf_counter()
