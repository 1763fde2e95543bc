"""The breaker's state machine, retry-safety and the settings' resolution, in process."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidInput
from gateway.servers.resilience.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from gateway.servers.resilience.retry import backoff
from gateway.servers.resilience.settings import (
    BreakerPolicy,
    Defaults,
    RetryPolicy,
    ServerPolicy,
    parse_resilience,
    retry_safe,
)


def test_consecutive_failures_open_then_half_open_then_close() -> None:
    breaker = Breaker(BreakerPolicy(failures=3, error_rate=0, open_seconds=10))
    assert not breaker.failure(0.0, "x") and not breaker.failure(1.0, "x")
    breaker.success(1.5)  # a success in between starts the count again
    assert not breaker.failure(2.0, "x") and not breaker.failure(2.1, "x")
    assert breaker.failure(2.2, "boom") and breaker.state == OPEN
    assert not breaker.admits(5.0) and breaker.retry_after(5.0) == pytest.approx(7.2)
    assert breaker.admits(12.3) and breaker.state == HALF_OPEN
    breaker.probing += 1
    assert not breaker.admits(12.4)  # one probe at a time
    breaker.close()
    assert breaker.state == CLOSED and breaker.failures == 0


def test_the_error_rate_opens_once_enough_calls_were_seen() -> None:
    breaker = Breaker(BreakerPolicy(failures=100, error_rate=0.5, min_calls=10, window_seconds=60))
    for i in range(5):
        breaker.success(float(i))
    for i in range(4):
        assert not breaker.failure(5.0 + i, "x")  # 4 of 9: under the minimum
    assert breaker.failure(9.0, "x") is False  # 5 of 10: not over half
    assert breaker.failure(9.5, "x") is True and breaker.state == OPEN  # 6 of 11


def test_a_disabled_breaker_never_opens() -> None:
    breaker = Breaker(BreakerPolicy(enabled=False, failures=1))
    assert not breaker.failure(0.0, "x") and breaker.state == CLOSED


def test_retry_safety() -> None:
    assert retry_safe({"readOnlyHint": True}, None)
    assert retry_safe({"idempotentHint": True}, None)
    assert not retry_safe({"destructiveHint": True}, None) and not retry_safe(None, None)
    assert retry_safe(None, True) and not retry_safe({"readOnlyHint": True}, False)


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(backoff_seconds=0.1, backoff_max_seconds=0.3)
    assert 0.05 <= backoff(policy, 1) <= 0.1
    assert 0.1 <= backoff(policy, 2) <= 0.2
    assert 0.15 <= backoff(policy, 5) <= 0.3


def test_server_and_tool_settings_override_the_defaults() -> None:
    defaults = Defaults(BreakerPolicy(failures=5), RetryPolicy(attempts=3))
    config = {
        "resilience": parse_resilience(
            {"breaker": {"failures": 2}, "tools": {"t": {"retries": {"attempts": 5}}}}
        )
    }
    policy = ServerPolicy.of(config, defaults)
    assert policy.breaker.failures == 2 and policy.retries.attempts == 3
    breaker, retries, idempotent = policy.tool("t")
    assert breaker.failures == 2 and retries.attempts == 5 and idempotent is None


def test_wrong_settings_name_the_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_resilience({"retries": {"backoff_seconds": -1}})
    field = caught.value.details["errors"][0]["field"]
    assert field == "config.resilience.retries.backoff_seconds"
