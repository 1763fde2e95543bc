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

The SDK path bridges its calls the same way (sdk_input.py): a :class:`Parked` call is
either path's; what the bridge sends a fast-path call's backend it posts on the call's
route, an SDK-path call takes it itself (:meth:`Parked.deliver`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

import orjson

from gateway.servers.calls import CallTarget
from gateway.servers.runtimes.direct import DirectRoute

log = logging.getLogger("gateway.mcp")

# What a 2026-07-28 `inputRequests` entry may be (InputRequest in the schema).
BRIDGED_METHODS = frozenset({"sampling/createMessage", "elicitation/create", "roots/list"})
STATE_PREFIX = "mcpgw-input-"
# The SDK path's tokens: the fast path leaves them to it ("." is not in a token's alphabet).
SDK_STATE_PREFIX = STATE_PREFIX + "s."
UNKNOWN_STATE = (
    "requestState is unknown or has expired (it lives on the gateway process that issued "
    "it): call the tool again without it"
)
_MAX_PENDING = 10_000

Post = Callable[[DirectRoute, dict[str, Any], str | None], Awaitable[None]]


@dataclass
class Event:
    """What the backend sent on a pending call: ``kind`` is ``ask`` (a request for the
    agent), ``note`` (a notification), ``final`` (the call's answer) or ``broken``."""

    kind: str
    message: dict[str, Any] | None = None
    data: bytes = b""
    # The SDK path's: the call's result or exception (final), a send to the agent (note).
    outcome: Any = None


@dataclass
class Parked:
    """A backend call kept open while its agent answers the questions it was asked."""

    owner: tuple[str, str | None]  # (user id, key id) of the caller
    server: str
    target: CallTarget = field(kw_only=True)  # what was called
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue, kw_only=True)
    # input key we gave the agent → the backend's request id it answers
    asked: dict[str, Any] = field(default_factory=dict, kw_only=True)
    pump: asyncio.Task[None] | None = field(default=None, kw_only=True)  # reads the call
    expiry: asyncio.TimerHandle | None = field(default=None, kw_only=True)
    # Between `input_required` and the agent's retry: its agent was asked and its backend
    # handler waits for that answer, so it is not who asks anything new meanwhile.
    awaiting_agent: bool = field(default=False, kw_only=True)

    async def deliver(self, message: dict[str, Any]) -> None:
        """Take a JSON-RPC message for the backend (an answer to one of its requests, or
        notifications/cancelled) where the bridge has no route to post it on."""
        raise NotImplementedError


@dataclass
class PendingCall(Parked):
    """A fast-path call: its backend is reached over the route's channel."""

    route: DirectRoute
    backend_id: str


C = TypeVar("C", bound=Parked)


class InputBridge(Generic[C]):
    """The pending calls of this process (of one path), by `requestState` token."""

    @overload
    def __init__(self: InputBridge[PendingCall], post: Post) -> None: ...

    @overload
    def __init__(self: InputBridge[C], post: None = None, *, prefix: str) -> None: ...

    def __init__(self, post: Post | None = None, *, prefix: str = STATE_PREFIX) -> None:
        self._post = post  # the fast path's: sends a JSON-RPC message to a backend, quietly
        self._prefix = prefix
        self._calls: dict[str, C] = {}

    def __len__(self) -> int:
        return len(self._calls)

    @staticmethod
    def issuer(state: object) -> str | None:
        """Which path parked the call a `requestState` names, and so resumes it: "sdk",
        "fast", or None (no state, or a 2026 backend's own)."""
        if not isinstance(state, str) or not state.startswith(STATE_PREFIX):
            return None
        return "sdk" if state.startswith(SDK_STATE_PREFIX) else "fast"

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

    def park(self, call: C, asks: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
        """Register ``call`` until its agent retries; the `input_required` result to send."""
        requests: dict[str, Any] = {}
        for number, message in enumerate(asks, start=len(call.asked) + 1):
            key = f"input-{number}"
            call.asked[key] = message["id"]
            request = {"method": message["method"]}
            if message.get("params") is not None:
                request["params"] = message["params"]
            requests[key] = request
        token = self._prefix + secrets.token_urlsafe(24)
        self._calls[token] = call
        while len(self._calls) > _MAX_PENDING:
            self._expire(next(iter(self._calls)))
        call.expiry = asyncio.get_running_loop().call_later(timeout, self._expire, token)
        call.awaiting_agent = True
        return {"resultType": "input_required", "inputRequests": requests, "requestState": token}

    def take(self, token: str, owner: tuple[str, str | None]) -> C | None:
        """The pending call ``token`` names, if ``owner`` made it (removed: one retry)."""
        call = self._calls.get(token)
        if call is None or call.owner != owner:
            return None
        del self._calls[token]
        call.awaiting_agent = False
        if call.expiry is not None:
            call.expiry.cancel()
        return call

    async def answer(self, call: C, responses: object) -> None:
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
            await self._send(call, reply)
        call.asked.clear()

    def _expire(self, token: str) -> None:
        call = self._calls.pop(token, None)
        if call is not None:
            asyncio.get_running_loop().create_task(self.close(call, "no answer came"))

    async def close(self, call: C, reason: str) -> None:
        """Give up a pending call: stop reading it and cancel it at the backend."""
        call.awaiting_agent = False
        if call.expiry is not None:
            call.expiry.cancel()
        if call.pump is not None:
            call.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await call.pump
        backend_id = call.backend_id if isinstance(call, PendingCall) else None
        cancel = {"requestId": backend_id, "reason": f"{reason} at the gateway"}
        await self._send(
            call, {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel}
        )

    async def _send(self, call: C, message: dict[str, Any]) -> None:
        """To the call's backend: posted on a fast-path call's route, else handed to it."""
        if not isinstance(call, PendingCall):
            await call.deliver(message)
        elif self._post is not None:
            await self._post(call.route, message, message.get("method"))


async def _pump(call: PendingCall, messages: AsyncIterator[bytes], stack: AsyncExitStack) -> None:
    """Read the rest of the call's stream into ``call.events``."""
    async with stack:
        try:
            async for data in messages:
                data = call.route.secrets.json(data)
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
