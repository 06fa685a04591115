"""Stopping tasks when one cancellation can be lost (Python 3.11's ``asyncio.wait_for``).

A task that lost its one cancellation ran on: an in-process aggregator kept polling after its
test ended (the teardown waited until the suite's limit), and ``aiaas train`` ignored a SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

import pytest

from aiaas.streams.lifecycle import bounded, cancel, cancel_all, within
from aiaas.streams.runtime import Interrupt


async def _loses_one_cancellation(started: asyncio.Event) -> None:
    """What a loop does after ``asyncio.wait_for`` swallowed its cancellation: it goes on."""
    started.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(3600)
    await asyncio.sleep(3600)


async def _started(coro_fn: object) -> asyncio.Task[None]:
    started = asyncio.Event()
    task = asyncio.create_task(coro_fn(started))  # type: ignore[operator]
    await started.wait()
    return task


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="fixed in 3.12 (wait_for rewritten on timeout)")
async def test_python_311_wait_for_loses_a_cancellation_when_its_future_is_done() -> None:
    """Why ``cancel`` cancels again (CPython issue 86296): the cancelled task returns a value."""
    done = asyncio.get_running_loop().create_future()
    done.set_result("went on")

    async def waits() -> str:
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        return await asyncio.wait_for(done, 10)

    assert await asyncio.create_task(waits()) == "went on"


async def test_cancel_stops_a_task_that_lost_its_first_cancellation() -> None:
    task = await _started(_loses_one_cancellation)
    t0 = time.monotonic()
    async with asyncio.timeout(10):
        await cancel(task)
    assert task.cancelled()
    assert time.monotonic() - t0 < 5


async def test_cancel_lets_the_callers_own_cancellation_pass() -> None:
    stubborn = await _started(_loses_one_cancellation)
    caller = asyncio.create_task(cancel(stubborn))
    await asyncio.sleep(0.05)  # the caller is inside cancel(), waiting
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await cancel(stubborn)


async def test_cancel_raises_the_tasks_error_unless_quiet() -> None:
    async def fails() -> None:
        raise ValueError("broken")

    task = asyncio.create_task(fails())
    await asyncio.wait([task])
    with pytest.raises(ValueError, match="broken"):
        await cancel(task)
    await cancel(task, quiet=True)
    await cancel(None)


async def test_cancel_all_stops_every_task() -> None:
    tasks = [await _started(_loses_one_cancellation) for _ in range(3)]
    async with asyncio.timeout(10):
        await cancel_all(tasks)
    assert all(t.cancelled() for t in tasks)


async def test_within_says_whether_it_ended_and_passes_a_cancellation() -> None:
    event = asyncio.Event()
    assert not await within(event.wait(), 0.05)
    event.set()
    assert await within(event.wait(), 5)
    waiter = asyncio.create_task(within(asyncio.Event().wait(), 60))
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_a_stop_signal_is_sent_again_until_the_task_ends() -> None:
    task = await _started(_loses_one_cancellation)
    interrupt = Interrupt(task, every_s=0.1)
    interrupt()
    async with asyncio.timeout(10):
        await asyncio.wait([task])
    assert task.cancelled() and interrupt.sent == 2


async def test_a_stop_signal_is_not_sent_again_once_clean_up_began() -> None:
    task = await _started(_loses_one_cancellation)
    interrupt = Interrupt(task, every_s=0.05)
    interrupt()
    await asyncio.sleep(0)  # the first cancellation is delivered (and lost)
    interrupt.cleaning = True
    await asyncio.sleep(0.3)
    assert not task.done() and interrupt.sent == 1
    await cancel(task)


async def test_bounded_holds_its_deadline_when_the_work_loses_a_cancellation() -> None:
    """``asyncio.timeout`` cancels once at its deadline: work that lost it ran on past the deadline
    (a scoring transaction waited for a broker past its attempt time); ``bounded`` does not."""
    started = asyncio.Event()
    work = _loses_one_cancellation(started)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(10):
            await bounded(work, 0.2)
    assert time.monotonic() - t0 < 5
    assert await bounded(asyncio.sleep(0, "done"), 5) == "done"
