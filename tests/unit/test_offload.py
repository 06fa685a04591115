"""Offload: short blocking calls run inline on the loop, long ones in a worker thread."""

from __future__ import annotations

import threading
import time

import pytest

from aiaas.streams.offload import Offload


def where() -> int:
    return threading.get_ident()


async def test_first_call_goes_to_a_thread_then_short_calls_run_inline() -> None:
    off = Offload(inline_below_ms=50)
    loop_thread = threading.get_ident()
    assert await off(where) != loop_thread  # nothing measured yet
    assert await off(where) == loop_thread
    assert (off.thread_calls, off.inline_calls) == (1, 1)


async def test_a_long_call_sends_the_next_one_to_a_thread() -> None:
    off = Offload(inline_below_ms=5)
    loop_thread = threading.get_ident()
    await off(where)
    await off(time.sleep, 0.02)  # inline (the last call was short), but it took too long
    assert await off(where) != loop_thread
    assert await off(where) == loop_thread  # short again: back inline


async def test_zero_disables_inlining_and_errors_propagate() -> None:
    off = Offload(inline_below_ms=0)
    loop_thread = threading.get_ident()
    for _ in range(3):
        assert await off(where) != loop_thread
    assert off.inline_calls == 0

    def boom(x: int) -> int:
        raise ValueError(x)

    with pytest.raises(ValueError):
        await off(boom, 3)
    assert await off(lambda a, b=0: a + b, 2, b=5) == 7


async def test_prime_lets_the_first_call_run_inline() -> None:
    off = Offload(inline_below_ms=50)
    off.prime(0.001)  # e.g. a warm-up step took 1 ms
    assert await off(where) == threading.get_ident()


async def test_a_cpu_clock_does_not_count_waiting_as_work() -> None:
    """Timed by the thread's CPU, a call that mostly waits (as one in a thread waits for the GIL)
    counts as short, and the next one runs inline; on the wall clock it would not."""
    wall, cpu = Offload(inline_below_ms=5), Offload(inline_below_ms=5, clock=time.thread_time)
    loop_thread = threading.get_ident()
    for off in (wall, cpu):
        await off(time.sleep, 0.05)  # the first call: in a thread, 50 ms of waiting
    assert await wall(where) != loop_thread
    assert await cpu(where) == loop_thread


async def test_long_calls_run_in_the_executor_given() -> None:
    """The inference worker's onnxruntime calls keep to its own one-thread pool when they are long."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="own") as pool:
        off = Offload(inline_below_ms=5, executor=pool)
        assert threading.current_thread().name != "own_0"
        assert await off(lambda: threading.current_thread().name) == "own_0"  # first call: the pool's
        assert await off(where) == threading.get_ident()  # short: inline
        await off(time.sleep, 0.02)
        assert await off(lambda: threading.current_thread().name) == "own_0"
