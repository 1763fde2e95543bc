"""The counting behind the limit stage (gateway/policy/limits.py), in process and on the
real Redis at 127.0.0.1:6379 (a key prefix of its own per test): rates with bursts,
concurrency, calendar quotas at their boundaries (an injected clock), budgets, and what
happens when Redis is unreachable."""

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
from gateway.policy.limits import Limiter, LimitExceeded, LimitsUnavailable, period_bounds

REDIS = os.environ.get("MCPGW_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def who(key: str = "k-1", teams: tuple[str, ...] = ("t-1",), role: str = "developer") -> Principal:
    return Principal("u-" + key, f"{key}@corp.example", key, role, key, ("*",), team_ids=teams)


class Clock:
    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Limiter]]:
    """Limiters over one storage: in process, or on Redis under a fresh prefix."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    if request.param == "redis":
        client = redis.Redis.from_url(REDIS)
        try:
            client.ping()
        except redis.ConnectionError as exc:
            pytest.fail(f"Redis is needed at {REDIS}: {exc}", pytrace=False)
    made: list[Limiter] = []
    shared: dict[str, Any] = {}

    def build(
        limits: list[dict[str, Any]], clock: Callable[[], float] | None = None, **kw: Any
    ) -> Limiter:
        url = REDIS if request.param == "redis" else None
        limiter = Limiter(url, key_prefix=prefix, **({"clock": clock} if clock else {}), **kw)
        if url is None and "memory" in shared:  # one process: one storage
            limiter.counts = shared["memory"]
        shared.setdefault("memory", limiter.counts)
        limiter.load(CompiledPolicy(parse({"limits": limits}), 1))
        made.append(limiter)
        return limiter

    yield build
    for limiter in made:
        await limiter.drain()
    if request.param == "redis":
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


async def test_a_rate_allows_the_burst_then_refuses_with_when_to_retry(make: Any) -> None:
    limiter = make(
        [
            {
                "id": "echo-per-key",
                "scope": ["key", "tool"],
                "targets": ["everything__*"],
                "rate": "5/minute",
                "burst": 5,
            }
        ]
    )
    for _ in range(5):
        await limiter.admit(who(), "everything", "everything__echo")
    with pytest.raises(LimitExceeded) as caught:
        await limiter.admit(who(), "everything", "everything__echo")
    refused = caught.value
    assert (refused.code, refused.limit, refused.status_code) == (
        "rate_limited",
        "echo-per-key",
        429,
    )
    assert 1 <= refused.retry_after <= 60
    assert refused.details["scope"] == {"key": "k-1", "tool": "everything__echo"}
    assert refused.headers()["Retry-After"] == str(refused.retry_after)
    assert refused.headers()["RateLimit-Limit"] == "5"
    # Counted per key and per tool: another tool, another key and another server go on.
    await limiter.admit(who(), "everything", "everything__add")
    await limiter.admit(who("k-2"), "everything", "everything__echo")
    await limiter.admit(who(), "other", "other__echo")


async def test_two_limiters_on_one_storage_share_the_count_exactly(make: Any) -> None:
    spec = [{"id": "shared", "scope": ["user"], "rate": "7/hour"}]
    first, second = make(spec), make(spec)

    async def one(limiter: Limiter) -> bool:
        try:
            await limiter.admit(who(), "s", "s__t")
            return True
        except LimitExceeded:
            return False

    results = await asyncio.gather(*(one(first if i % 2 else second) for i in range(20)))
    assert results.count(True) == 7


async def test_concurrency_counts_calls_in_flight(make: Any) -> None:
    limiter = make([{"id": "two-at-once", "scope": ["server"], "concurrency": 2}])
    a = await limiter.admit(who(), "s", "s__t")
    b = await limiter.admit(who("k-2"), "s", "s__u")
    with pytest.raises(LimitExceeded, match="2 in flight") as caught:
        await limiter.admit(who(), "s", "s__t")
    assert caught.value.code == "concurrency_limited"
    await limiter.admit(who(), "other", "other__t")  # another server
    limiter.release(a, "s__t", None)
    await limiter.drain()
    await limiter.admit(who(), "s", "s__t")
    assert b is not None


async def test_a_daily_quota_resets_at_midnight_utc(make: Any) -> None:
    clock = Clock(datetime(2026, 12, 7, 23, 59, 58, tzinfo=UTC))
    limiter = make([{"id": "team-day", "scope": ["team"], "quota": "3/day"}], clock)
    for _ in range(3):
        await limiter.admit(who(), "s", "s__t")
    with pytest.raises(LimitExceeded) as caught:
        await limiter.admit(who(), "s", "s__t")
    refused = caught.value
    assert refused.code == "quota_exceeded"
    assert refused.details["resetsAt"] == "2026-12-08T00:00:00+00:00"
    assert refused.retry_after == 2
    assert "resets at 2026-12-08T00:00:00+00:00" in refused.message
    # Another team of its own; a caller in no team is not counted by a team limit.
    await limiter.admit(who("k-2", teams=("t-2",)), "s", "s__t")
    await limiter.admit(who("k-3", teams=()), "s", "s__t")
    clock.now += 3  # 00:00:01 the next day
    await limiter.admit(who(), "s", "s__t")
    usage = {u["scope"]["team"]: u for u in await limiter.usage(who())}
    assert (usage["t-1"]["used"], usage["t-1"]["remaining"]) == (1, 2)


async def test_a_monthly_quota_resets_on_the_first() -> None:
    assert period_bounds(datetime(2026, 12, 31, 23, 0, tzinfo=UTC).timestamp(), "month") == (
        "2026-12",
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert period_bounds(datetime(2026, 2, 28, 12, tzinfo=UTC).timestamp(), "day")[1] == datetime(
        2026, 3, 1, tzinfo=UTC
    )


async def test_a_budget_warns_then_blocks_until_the_period_ends(make: Any) -> None:
    clock = Clock(datetime(2026, 12, 7, 12, 0, tzinfo=UTC))
    limiter = make(
        [{"id": "team-spend", "scope": ["team"], "budget": {"limit": 1.0, "warn_at": 0.5}}], clock
    )
    limiter.load(
        CompiledPolicy(
            parse(
                {
                    "limits": [
                        {
                            "id": "team-spend",
                            "scope": ["team"],
                            "budget": {"limit": 1.0, "warn_at": 0.5},
                        }
                    ],
                    "costs": [{"targets": ["llm__*"], "cost": 0.4}],
                }
            ),
            2,
        )
    )
    spent = []
    for _ in range(3):
        admission = await limiter.admit(who(), "llm", "llm__ask")
        spent.append(list(admission.warnings))
        limiter.release(admission, "llm__ask", None)
        await limiter.drain()
    assert spent[0] == [] and spent[1] == []  # 0.0 and 0.4 spent: under half
    assert "80%" in spent[2][0] and "resets 2026-12-08T00:00:00+00:00" in spent[2][0]
    with pytest.raises(LimitExceeded) as caught:  # 1.2 spent
        await limiter.admit(who(), "llm", "llm__ask")
    assert caught.value.code == "budget_exceeded"
    # Without a cost entry a call costs its result's tokens per thousand.
    assert limiter.cost_of("other__x", 8000) == 2.0
    clock.now = datetime(2026, 12, 8, 0, 0, 1, tzinfo=UTC).timestamp()
    await limiter.admit(who(), "llm", "llm__ask")


async def test_subjects_and_targets_choose_what_a_limit_counts(make: Any) -> None:
    limiter = make(
        [
            {
                "id": "devs",
                "subjects": {"roles": ["developer"]},
                "targets": ["git__*"],
                "scope": ["key"],
                "rate": "1/hour",
            }
        ]
    )
    await limiter.admit(who(), "git", "git__log")
    with pytest.raises(LimitExceeded):
        await limiter.admit(who(), "git", "git__diff")
    await limiter.admit(who(role="operator"), "git", "git__log")  # not a developer
    await limiter.admit(who(), "fs", "fs__read")  # another server


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_an_unreachable_redis_follows_the_failure_mode(mode: str) -> None:
    dead = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    limiter = Limiter(dead, failure_mode=mode, key_prefix="test-dead")
    limiter.load(CompiledPolicy(parse({"limits": [{"id": "r", "rate": "1/second"}]}), 1))
    if mode == "open":
        for _ in range(3):  # allowed, and counted as failures
            await limiter.admit(who(), "s", "s__t")
        assert limiter.failures == 3
    else:
        with pytest.raises(LimitsUnavailable) as caught:
            await limiter.admit(who(), "s", "s__t")
        assert (caught.value.status_code, caught.value.code) == (503, "limits_unavailable")
