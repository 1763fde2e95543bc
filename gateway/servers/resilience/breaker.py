"""Circuit breakers: one per server and one per (server, tool), in this replica's memory.

A breaker is *closed* while calls succeed. It *opens* after ``failures`` failed calls
in a row, or when more than ``error_rate`` of the calls in the last
``window_seconds`` failed (once ``min_calls`` were seen). Open, it answers at once
(the pipeline's breaker stage, stage.py): nothing is sent to the backend. After
``open_seconds`` it is *half-open*: ``half_open_probes`` calls at a time go through;
one that succeeds closes it, one that fails opens it again.

What counts as a failure (the backend stages set ``Call.fault``): ``server`` — the
backend could not be reached or cut the call short (connection refused or lost, an
HTTP error, a stream that ended without the answer) — counts against the server's
breaker and the tool's; ``call`` — a timeout or an unreadable answer — against the
tool's only. A tool's own error result (``isError``) and a JSON-RPC error answer are
answers, not failures.

Cost while closed: a success is two attribute updates and a comparison; no lock
(one event loop) and no await.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.servers.resilience.settings import BreakerPolicy

CLOSED, HALF_OPEN, OPEN = 0, 1, 2
STATE_NAMES = ("closed", "half_open", "open")


class Breaker:
    """One breaker's state; times are ``time.perf_counter()`` seconds."""

    __slots__ = (
        "calls",
        "failed",
        "failures",
        "last_error",
        "opened_at",
        "opens",
        "policy",
        "prev_calls",
        "prev_failed",
        "probing",
        "retry_at",
        "state",
        "window_end",
    )

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.state = CLOSED
        self.failures = 0  # in a row
        # The error-rate window: this one's counts and the previous one's, weighed by how
        # much of it still falls in the last ``window_seconds`` (a sliding estimate).
        self.calls = self.failed = 0
        self.prev_calls = self.prev_failed = 0
        self.window_end = 0.0
        self.probing = 0  # half-open calls in flight
        self.retry_at = 0.0  # open until then
        self.opened_at = 0.0
        self.opens = 0  # times it opened
        self.last_error: str | None = None

    # --- the closed state's bookkeeping (hot path) ---------------------------------------
    def success(self, now: float) -> None:
        """A call that reached the backend and was answered."""
        if now >= self.window_end:
            self._roll(now)
        self.calls += 1
        self.failures = 0

    def failure(self, now: float, error: str | None) -> bool:
        """A failed call; True when it opened the breaker."""
        if now >= self.window_end:
            self._roll(now)
        self.calls += 1
        self.failed += 1
        self.failures += 1
        self.last_error = error
        policy = self.policy
        if not policy.enabled or self.state != CLOSED:
            return False
        if self.failures >= policy.failures or self._rate_exceeded(now):
            self.open(now)
            return True
        return False

    def _roll(self, now: float) -> None:
        window = self.policy.window_seconds
        if now >= self.window_end + window:  # idle for a whole window: forget it all
            self.prev_calls = self.prev_failed = 0
        else:
            self.prev_calls, self.prev_failed = self.calls, self.failed
        self.calls = self.failed = 0
        self.window_end = now + window

    def _rate_exceeded(self, now: float) -> bool:
        policy = self.policy
        if policy.error_rate <= 0:
            return False
        weight = max(0.0, (self.window_end - now) / policy.window_seconds)
        calls = self.calls + self.prev_calls * weight
        if calls < policy.min_calls:
            return False
        return (self.failed + self.prev_failed * weight) / calls > policy.error_rate

    # --- transitions ---------------------------------------------------------------------
    def open(self, now: float) -> None:
        self.state = OPEN
        self.opened_at = now
        self.retry_at = now + self.policy.open_seconds
        self.probing = 0
        self.opens += 1

    def close(self) -> None:
        self.state = CLOSED
        self.failures = self.probing = 0
        self.calls = self.failed = self.prev_calls = self.prev_failed = 0
        self.window_end = 0.0

    def admits(self, now: float) -> bool:
        """Whether a call may go through now (the state is not closed): an open breaker
        whose time is up turns half-open; a half-open one takes a few probes."""
        if self.state == OPEN:
            if now < self.retry_at:
                return False
            self.state, self.probing = HALF_OPEN, 0
        return self.probing < self.policy.half_open_probes

    def retry_after(self, now: float) -> float:
        """Seconds until calls are let through again (0: now, as probes)."""
        return max(0.0, self.retry_at - now) if self.state == OPEN else 0.0

    def describe(self, now: float | None = None) -> dict[str, Any]:
        """Its state for the health endpoint (times as Unix seconds)."""
        now = time.perf_counter() if now is None else now
        wall = time.time() - now
        out: dict[str, Any] = {
            "state": STATE_NAMES[self.state],
            "consecutive_failures": self.failures,
            "opens": self.opens,
        }
        if self.last_error is not None:
            out["last_error"] = self.last_error
        if self.state != CLOSED:
            out["opened_at"] = round(wall + self.opened_at, 3)
            out["retry_at"] = round(wall + max(self.retry_at, now), 3)
        return out
