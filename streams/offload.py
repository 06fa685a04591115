"""Run short blocking work inline on the event loop, long work in a worker thread.

A thread hop (executor submit, worker wake-up, the GIL handed back and forth, the loop woken through
its self-pipe) costs 0.1-1 ms of latency on a busy 2-core machine: more than the sub-millisecond
torch step of a small model that it would keep off the loop. ``Offload`` times every call and runs
the next one inline while the last one was short, in a thread otherwise, so a large model or a slow
device still never blocks the loop (and the Kafka clients on it) for long. Short calls are timed
inline; a call that turns long sends the next one back to the thread, where it is timed again.
The clock is wall time, or the calling thread's CPU time (``time.thread_time``) for work that runs
in that thread alone: a call in a worker thread also waits for the GIL while the loop runs, and its
wall time alone kept work that would be short inline in the thread.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class Offload:
    """``await offload(fn, *args)``: ``fn(*args)`` inline if the previous call took under
    ``inline_below_ms`` (0 disables inlining), else in ``executor`` (default: ``asyncio.to_thread``'s)."""

    def __init__(self, inline_below_ms: float = 10.0, clock: Callable[[], float] = time.perf_counter,
                 executor: Executor | None = None) -> None:
        self.limit_s = inline_below_ms / 1000
        self.clock = clock
        self.executor = executor
        self.last_s = float("inf")  # nothing measured yet: the first call goes to a thread
        self.inline_calls = 0
        self.thread_calls = 0

    def prime(self, seconds: float) -> None:
        """Seed the timing (e.g. with a warm-up call's), so the first real call need not go to a thread."""
        self.last_s = seconds

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(fn, *args, **kwargs)
        if self.last_s < self.limit_s:
            self.inline_calls += 1
            return self._timed(call)
        self.thread_calls += 1
        if self.executor is None:
            return await asyncio.to_thread(self._timed, call)
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._timed, call)

    def _timed(self, call: Callable[[], T]) -> T:
        t0 = self.clock()
        try:
            return call()
        finally:
            self.last_s = self.clock() - t0
