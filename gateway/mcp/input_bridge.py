"""Server-to-client requests of a 2025-11-25 backend, for a 2026-07-28 agent.

A 2025 backend asks mid-call (sampling, elicitation, roots) on the call's stream and
waits for the answer. A 2026 agent has no session to be asked on: it expects an
`input_required` result and retries the call with `inputResponses` and the
`requestState` it was given. The bridge connects the two: the backend's call is kept
open and read on by a task of its own (:class:`PendingCall`), the agent gets the
questions as `inputRequests` with a `requestState` naming the pending call, and its
retry answers the backend's requests and carries on reading the same call — the tool
runs once, as the backend expects.

Notifications the backend sends while the agent is away (progress, logs) are kept and
sent on the retry's stream. A pending call nobody comes back for is cancelled at the
backend after the call timeout. `requestState` is a random token bound to the key
that made the call; it lives in this process (a retry that reaches another replica
finds nothing and is told to call again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.servers.runtimes.direct import DirectRoute

log = logging.getLogger("gateway.mcp")

# What a 2026-07-28 `inputRequests` entry may be (InputRequest in the schema).
BRIDGED_METHODS = frozenset({"sampling/createMessage", "elicitation/create", "roots/list"})
STATE_PREFIX = "mcpgw-input-"
_MAX_PENDING = 10_000


@dataclass
class Event:
    """What the backend sent on a pending call: ``kind`` is ``ask`` (a request for the
    agent), ``note`` (a notification), ``final`` (the call's answer) or ``broken``."""

    kind: str
    message: dict[str, Any] | None = None
    data: bytes = b""


@dataclass
class PendingCall:
    """A backend call parked while its agent answers the questions it was asked."""

    owner: tuple[str, str | None]  # (user id, key id) of the caller
    server: str
    route: DirectRoute
    backend_id: str
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    # input key we gave the agent → the backend's request id it answers
    asked: dict[str, Any] = field(default_factory=dict)
    pump: asyncio.Task[None] | None = None
    expiry: asyncio.TimerHandle | None = None


class InputBridge:
    """The pending calls of this process, by `requestState` token."""

    def __init__(self, post: Callable[[DirectRoute, dict[str, Any], str | None], Awaitable[None]]):
        self._post = post  # sends a JSON-RPC message to a backend, quietly
        self._calls: dict[str, PendingCall] = {}

    def __len__(self) -> int:
        return len(self._calls)

    @staticmethod
    def is_ours(state: object) -> bool:
        """Is this `requestState` one the bridge issued (not a 2026 backend's own)?"""
        return isinstance(state, str) and state.startswith(STATE_PREFIX)

    def start(
        self,
        call: PendingCall,
        messages: AsyncIterator[bytes],
        stack: AsyncExitStack,
        first: dict[str, Any],
    ) -> None:
        """Keep reading ``messages`` (the call's stream; ``stack`` closes it) in the
        background, the backend request ``first`` already read."""
        call.events.put_nowait(Event("ask", first))
        call.pump = asyncio.get_running_loop().create_task(_pump(call, messages, stack))

    def park(self, call: PendingCall, asks: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
        """Register ``call`` until its agent retries; the `input_required` result to send."""
        requests: dict[str, Any] = {}
        for number, message in enumerate(asks, start=len(call.asked) + 1):
            key = f"input-{number}"
            call.asked[key] = message["id"]
            request = {"method": message["method"]}
            if message.get("params") is not None:
                request["params"] = message["params"]
            requests[key] = request
        token = STATE_PREFIX + secrets.token_urlsafe(24)
        self._calls[token] = call
        while len(self._calls) > _MAX_PENDING:
            self._expire(next(iter(self._calls)))
        call.expiry = asyncio.get_running_loop().call_later(timeout, self._expire, token)
        return {"resultType": "input_required", "inputRequests": requests, "requestState": token}

    def take(self, token: str, owner: tuple[str, str | None]) -> PendingCall | None:
        """The pending call ``token`` names, if ``owner`` made it (removed: one retry)."""
        call = self._calls.get(token)
        if call is None or call.owner != owner:
            return None
        del self._calls[token]
        if call.expiry is not None:
            call.expiry.cancel()
        return call

    async def answer(self, call: PendingCall, responses: object) -> None:
        """Send the agent's `inputResponses` to the backend requests they answer."""
        given = responses if isinstance(responses, dict) else {}
        for key, backend_request_id in call.asked.items():
            result = given.get(key)
            if isinstance(result, dict):
                reply: dict[str, Any] = {
                    "jsonrpc": "2.0",
                    "id": backend_request_id,
                    "result": result,
                }
            else:
                error = {"code": -32603, "message": "the client gave no answer to this request"}
                reply = {"jsonrpc": "2.0", "id": backend_request_id, "error": error}
            await self._post(call.route, reply, None)
        call.asked.clear()

    def _expire(self, token: str) -> None:
        call = self._calls.pop(token, None)
        if call is not None:
            asyncio.get_running_loop().create_task(self.close(call, "no answer came"))

    async def close(self, call: PendingCall, reason: str) -> None:
        """Give up a pending call: stop reading it and cancel it at the backend."""
        if call.expiry is not None:
            call.expiry.cancel()
        if call.pump is not None:
            call.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await call.pump
        cancel = {"requestId": call.backend_id, "reason": f"{reason} at the gateway"}
        await self._post(
            call.route,
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel},
            "notifications/cancelled",
        )


async def _pump(call: PendingCall, messages: AsyncIterator[bytes], stack: AsyncExitStack) -> None:
    """Read the rest of the call's stream into ``call.events``."""
    async with stack:
        try:
            async for data in messages:
                data = call.route.mask(data)
                try:
                    message = orjson.loads(data.decode("utf-8", errors="replace"))
                except orjson.JSONDecodeError:
                    continue  # the SDK client skips what it cannot parse too
                if not isinstance(message, dict):
                    continue
                if "method" not in message:
                    if message.get("id") == call.backend_id:
                        call.events.put_nowait(Event("final", message))
                        return
                elif "id" in message:
                    call.events.put_nowait(Event("ask", message))
                else:
                    call.events.put_nowait(Event("note", message, data))
            call.events.put_nowait(Event("broken", data=b"closed the stream without answering"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            call.events.put_nowait(Event("broken", data=f"failed during the call: {exc}".encode()))
