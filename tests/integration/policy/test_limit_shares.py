"""Shares of a count on Redis (gateway/policy/counts.py): a replica counts several calls
at once and admits them without a round trip each, yet two replicas never admit more
than the limit between them and, near it, still share it exactly. Real Redis at
MCPGW_TEST_REDIS_URL (127.0.0.1:6379), a key prefix of its own per test."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from gateway.auth.principal import Principal
from gateway.policy.document import parse
from gateway.policy.engine import CompiledPolicy
from gateway.policy.limits import Limiter, LimitExceeded

REDIS = os.environ.get("MCPGW_TEST_REDIS_URL", "redis://127.0.0.1:6379")
CALLER = Principal("u-1", "a@corp.example", "k-1", "developer", "k-1", ("*",), team_ids=("t-1",))


@pytest.fixture
async def replicas() -> AsyncIterator[Callable[..., Limiter]]:
    """Limiters on one Redis, as two gateway replicas would be."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(REDIS)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is needed at {REDIS}: {exc}", pytrace=False)
    made: list[Limiter] = []

    def build(limits: list[dict[str, Any]], clock: Callable[[], float] | None = None) -> Limiter:
        limiter = Limiter(REDIS, key_prefix=prefix, **({"clock": clock} if clock else {}))
        limiter.load(CompiledPolicy(parse({"limits": limits}), 1))
        made.append(limiter)
        return limiter

    yield build
    for limiter in made:
        await limiter.drain()
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


async def admitted(limiter: Limiter) -> bool:
    try:
        await limiter.admit(CALLER, "s", "s__t")
        return True
    except LimitExceeded:
        return False


async def until_both_refuse(first: Limiter, second: Limiter) -> int:
    """Calls alternate between the two replicas until neither admits one more."""
    total, refused = 0, set()
    for i in range(100_000):
        limiter = first if i % 2 else second
        if await admitted(limiter):
            total, refused = total + 1, set()
        else:
            refused.add(id(limiter))
            if len(refused) == 2:
                return total
    raise AssertionError("the limit never refused")


@pytest.mark.parametrize(
    "limit",
    [
        {"rate": "640/hour", "burst": 640},
        {"quota": "640/day"},
    ],
    ids=["rate", "quota"],
)
async def test_two_replicas_admit_exactly_the_limit_in_few_round_trips(
    replicas: Any, limit: dict[str, Any]
) -> None:
    spec = [{"id": "big", "scope": ["user"], **limit}]
    first, second = replicas(spec), replicas(spec)
    assert await until_both_refuse(first, second) == 640
    trips = first.counts.round_trips + second.counts.round_trips
    # Shares of up to 640/16 = 40 calls: far fewer round trips than calls (one a call
    # without shares); near the limit one call at a time.
    assert trips < 640 / 4, trips
    usage = await first.usage(CALLER)
    assert usage[0]["used"] == 640


async def test_concurrent_calls_on_two_replicas_never_pass_the_limit(replicas: Any) -> None:
    spec = [{"id": "big", "scope": ["user"], "rate": "500/hour", "burst": 500}]
    first, second = replicas(spec), replicas(spec)
    results = await asyncio.gather(*(admitted(first if i % 2 else second) for i in range(1_500)))
    assert results.count(True) <= 500
    # What is left is what the two hold, bounded by their largest shares (500/16 each).
    assert results.count(True) >= 500 - 2 * 31


async def test_a_quota_share_that_lapses_is_given_back(replicas: Any) -> None:
    spec = [{"id": "day", "scope": ["user"], "quota": "640/day"}]
    limiter = replicas(spec)
    for _ in range(8):  # shares of 1, 2, 4 and 8: 15 counted, 8 admitted
        assert await admitted(limiter)
    share = next(iter(limiter.counts.shares.values()))
    assert share.left == 7
    assert (await limiter.usage(CALLER))[0]["used"] == 15
    share.until = 0  # it lapses (a replica that got no calls for a second)
    assert await admitted(limiter)
    # The 7 unused were given back with the next share's request (half the size: 8).
    assert (await limiter.usage(CALLER))[0]["used"] == 9 + share.left


async def test_a_quota_share_ends_with_its_period(replicas: Any) -> None:
    now = [datetime(2026, 12, 7, 23, 59, 59, tzinfo=UTC).timestamp()]
    spec = [{"id": "day", "scope": ["user"], "quota": "640/day"}]
    limiter = replicas(spec, clock=lambda: now[0])
    for _ in range(4):
        assert await admitted(limiter)
    assert next(iter(limiter.counts.shares.values())).left > 0
    now[0] += 2  # the next day: yesterday's share is not spent on today's calls
    assert await admitted(limiter)
    usage = (await limiter.usage(CALLER))[0]
    share = next(iter(limiter.counts.shares.values()))
    assert usage["used"] == 1 + share.left
