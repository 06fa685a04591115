"""The worker's Breather gives the event loop a turn (so group heartbeats run) once its interval
has passed during synchronous work, and costs only a clock read before that."""

from __future__ import annotations

import asyncio
import time

from aiaas.agents.inference.breather import Breather


def busy(seconds: float) -> None:
    """Synchronous work (decoding, say) that holds the loop."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_the_loop_gets_a_turn_during_long_synchronous_work() -> None:
    ran: list[int] = []
    breathe = Breather(every_s=60)
    asyncio.get_running_loop().call_soon(ran.append, 1)  # what a heartbeat would be
    await breathe()
    assert not ran and breathe.turns == 0  # within the interval: no turn taken
    breathe.every_s = 0.01
    busy(0.02)
    await breathe()
    assert ran == [1] and breathe.turns == 1
