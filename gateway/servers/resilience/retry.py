"""Retries where repeating a call is safe.

The rule: a call is repeated only when its tool is *retry-safe* — annotated
``readOnlyHint`` or ``idempotentHint``, or marked ``idempotent: true`` by an admin in
the server's `config.resilience.tools` (``idempotent: false`` forbids it whatever the
annotations say). Any other call is made once: once its request may have reached the
backend, the gateway never sends it again, even when the answer was lost (the backend
may have done the work). What is retried: failures to get an answer (connection
refused or lost, an HTTP error, a stream cut short); never a timeout (the call's time
is spent), a JSON-RPC error or a tool's error result (those are answers), nor a call
whose agent has already been sent part of the answer (the fast path's notifications).

Attempts are bounded (``attempts``, the first included); the delay before retry *n* is
``backoff_seconds * 2^(n-1)``, capped at ``backoff_max_seconds``, half of it random
(jitter, so failing callers do not retry in step); no retry starts after
``deadline_seconds`` (default: the call's timeout), and the call's timeout bounds all
attempts together.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from mcp import types
from mcp.types import INTERNAL_ERROR

from gateway.backend_errors import BackendError, BackendRequestError, BackendTimeout
from gateway.servers.resilience.settings import RetryPolicy

if TYPE_CHECKING:
    from gateway.servers.pipeline import Call
    from gateway.servers.resilience.stage import ServerState, ToolState
    from gateway.servers.runtimes.base import ServerRuntime

log = logging.getLogger("gateway.servers")
T = TypeVar("T")


# What the SDK client says in a backend's place when it answered an HTTP error without a
# JSON-RPC body (mcp/client/streamable_http.py): the request failed, nothing answered it.
_HTTP_FAILURE = (INTERNAL_ERROR, "Server returned an error response")


def http_failure(exc: BackendError) -> bool:
    """Whether a JSON-RPC error is the SDK client's stand-in for an HTTP error (a failure
    to answer, as on the fast path), not the backend's own answer."""
    if not isinstance(exc, BackendRequestError):
        return False
    return (exc.error.code, exc.error.message) == _HTTP_FAILURE


def backoff(policy: RetryPolicy, retry: int) -> float:
    """Seconds to wait before retry number ``retry`` (1 for the first)."""
    cap = min(policy.backoff_max_seconds, policy.backoff_seconds * 2.0 ** (retry - 1))
    return cap / 2 + random.uniform(0, cap / 2)  # jitter, not a secret


def last_start(policy: RetryPolicy, started: float, timeout: float) -> float:
    """The latest (loop) time a retry may start: within the deadline and the timeout."""
    deadline = policy.deadline_seconds
    return started + (min(deadline, timeout) if deadline is not None else timeout)


async def call_tool(runtime: ServerRuntime, call: Call, timeout: float) -> types.CallToolResult:
    """The SDK path's backend call: ``runtime.call_tool``, repeated per the call's
    retry plan (``Call.resilience``) when it has one (see the module docstring)."""
    return await repeat(runtime, call.target.backend, call.arguments, timeout, call.resilience)


async def repeat(
    runtime: ServerRuntime,
    tool: str,
    arguments: dict[str, Any],
    timeout: float,
    state: ToolState | None,
) -> types.CallToolResult:
    """``runtime.call_tool``, repeated per ``state``'s retry plan when it has one."""
    plan = state.retry if state is not None else None
    if plan is None or state is None:
        return await runtime.call_tool(tool, arguments, timeout)
    return await again(
        lambda left: runtime.call_tool(tool, arguments, left), timeout, plan, state.server, tool
    )


async def again(
    work: Callable[[float], Awaitable[T]],
    timeout: float,
    plan: RetryPolicy,
    server: ServerState,
    what: str,
) -> T:
    """``work(seconds left)``, repeated per ``plan`` while the backend fails to answer
    (the rule in the module docstring); ``server`` counts the repeats."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    end, latest = started + timeout, last_start(plan, started, timeout)
    attempt = 1
    while True:
        try:
            return await work(end - loop.time())
        except BackendTimeout:
            raise  # the call's time is spent
        except BackendError as exc:
            if isinstance(exc, BackendRequestError) and not http_failure(exc):
                raise  # the backend's answer
            delay = backoff(plan, attempt)
            if attempt >= plan.attempts or loop.time() + delay >= latest:
                raise
            log.info(
                "retrying a request",
                extra={"server": server.name, "target": what, "attempt": attempt + 1,
                       "error": str(exc)},
            )  # fmt: skip
        server.retries += 1
        attempt += 1
        await asyncio.sleep(delay)
