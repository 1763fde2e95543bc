"""The per-backend concurrency limit: bounded, fair, and safe under cancellation."""

from __future__ import annotations

import asyncio

import pytest

from gateway.servers.runtimes.limiter import Limiter


async def test_at_most_limit_holders_and_first_come_first_served() -> None:
    limiter = Limiter(2)
    holding = 0
    most = 0
    order: list[int] = []

    async def worker(n: int) -> None:
        nonlocal holding, most
        async with limiter:
            holding += 1
            most = max(most, holding)
            order.append(n)
            await asyncio.sleep(0.01)
            holding -= 1

    await asyncio.gather(*(worker(n) for n in range(6)))
    assert most == 2
    assert order == list(range(6))
    assert limiter.try_acquire() and limiter.try_acquire() and not limiter.try_acquire()


async def test_a_cancelled_waiter_gives_up_its_place_without_losing_a_slot() -> None:
    limiter = Limiter(1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limiter.release()
    assert limiter.try_acquire()  # the slot came back, not to the cancelled waiter


async def test_a_waiter_cancelled_after_being_handed_a_slot_passes_it_on() -> None:
    limiter = Limiter(1)
    await limiter.acquire()
    first = asyncio.create_task(limiter.acquire())
    second = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    limiter.release()  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)  # the slot went on to `second`
    assert not limiter.try_acquire()


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Limiter(0)
