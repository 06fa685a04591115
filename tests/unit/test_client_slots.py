"""The client's flow-control semaphore (aiaas.client.slots.Slots): order, and slots are never lost
when a waiter is cancelled."""

from __future__ import annotations

import asyncio

from aiaas.client.slots import Slots


async def test_waiters_get_slots_in_order_and_cancelled_waiters_pass_them_on() -> None:
    slots = Slots(1)
    await slots.acquire()  # the only slot
    order: list[str] = []

    async def take(name: str) -> None:
        await slots.acquire()
        order.append(name)

    a, b, c = (asyncio.create_task(take(n)) for n in "abc")
    await asyncio.sleep(0)  # all three wait now
    b.cancel()  # cancelled while waiting: it must not swallow a slot
    slots.release()
    await a
    slots.release()
    await c
    assert order == ["a", "c"] and b.cancelled()
    slots.release()
    await asyncio.wait_for(slots.acquire(), 1)  # the slot is free again


async def test_a_slot_handed_to_a_task_cancelled_before_it_runs_is_passed_on() -> None:
    slots = Slots(1)
    await slots.acquire()
    first = asyncio.create_task(slots.acquire())
    second = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # handed to `first` ...
    first.cancel()  # ... which is cancelled before it resumes: the slot goes to `second`
    await asyncio.wait_for(second, 1)
    assert first.cancelled()
