"""The input bridge on the SDK path: a 2025-11-25 backend asking a 2026-07-28 agent.

The fast path bridges its calls with input_bridge.py; this serves the calls the SDK path
makes (stdio, docker, legacy HTTP+SSE and in-process backends, and calls the fast path
passes on) with the same bridge and contract: a `requestState` bound to the calling key,
one question per round, notifications kept for the retry's stream, -32602 for a state
this process does not hold, and a call nobody comes back for cancelled at the backend
after the call timeout (the SDK client sends it `notifications/cancelled`).

For a 2026 agent's `tools/call` the backend call runs as a task of its own (the pending
call's ``pump``) with the agent's relay set; a backend request reaches the relay through
the session's callbacks (relay.py), and :meth:`SdkCall.ask` puts it on the call's events
and waits. The handler reads the events: notifications are sent on, the result is
returned, and a question is answered `input_required`. The retry's `inputResponses`
settle the waiting asks, and the handler reads on to the next question or the result.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from mcp import types
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import ValidationError

from gateway.servers.mcp.input_bridge import (
    SDK_STATE_PREFIX,
    UNKNOWN_STATE,
    Event,
    InputBridge,
    Parked,
)
from gateway.servers.runtimes.base import BackendTimeout
from gateway.servers.runtimes.relay import Relay

# Server-to-client requests: their request and result types.
REQUESTS: dict[str, tuple[type[Any], type[Any]]] = {
    "sampling/createMessage": (types.CreateMessageRequest, types.CreateMessageResult),
    "elicitation/create": (types.ElicitRequest, types.ElicitResult),
    "roots/list": (types.ListRootsRequest, types.ListRootsResult),
}
Send = Callable[[Relay], Awaitable[None]]


@dataclass
class SdkCall(Parked):
    """An SDK-path backend call of a 2026 agent; its backend asks through :meth:`ask`."""

    # our id for an ask → (its answer, the result type to read it as)
    waiting: dict[int, tuple[asyncio.Future[Any], type[Any]]] = field(
        default_factory=dict, kw_only=True
    )
    _ids: itertools.count[int] = field(default_factory=itertools.count, kw_only=True)
    # A call its agent's user is asked to approve first (approvals.py): the answer,
    # once the agent's retry brings it.
    verdict: asyncio.Future[bool] | None = field(default=None, kw_only=True)

    async def ask(self, method: str, params: Any) -> Any:
        """Ask the agent (on its next round); the typed answer, or an ErrorData."""
        number = next(self._ids)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[number] = (answer, REQUESTS[method][1])
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": number, "method": method}
        if params is not None:
            message["params"] = params.model_dump(by_alias=True, exclude_none=True, mode="json")
        self.events.put_nowait(Event("ask", message))
        try:
            return await answer
        finally:
            del self.waiting[number]

    def note(self, send: Send) -> None:
        """A notification for the agent, sent on the round being served (or the next)."""
        self.events.put_nowait(Event("note", outcome=send))

    async def deliver(self, message: dict[str, Any]) -> None:
        if message.get("method") == "notifications/cancelled":
            # The pump's cancel has made the SDK client tell the backend; what still
            # waits for the agent gets an error, so its callback ends.
            reason = message["params"]["reason"]
            for answer, _ in self.waiting.values():
                if not answer.done():
                    answer.set_result(types.ErrorData(code=INTERNAL_ERROR, message=reason))
            return
        found = self.waiting.get(message["id"])
        if found is None or found[0].done():
            return  # the backend gave up on it meanwhile
        answer, result_type = found
        if "result" not in message:
            answer.set_result(types.ErrorData.model_validate(message["error"]))
            return
        try:
            answer.set_result(result_type.model_validate(message["result"]))
        except ValidationError:
            text = f"the client's answer is not a valid {result_type.__name__}"
            answer.set_result(types.ErrorData(code=INVALID_PARAMS, message=text))


class SdkInputs:
    """The SDK path's calls waiting for their agent, and the rounds that serve them."""

    def __init__(self) -> None:
        self.bridge: InputBridge[SdkCall] = InputBridge(prefix=SDK_STATE_PREFIX)

    @staticmethod
    def is_retry(state: object) -> TypeGuard[str]:
        """Does this `requestState` name a call the gateway parked (either path's)?"""
        return isinstance(state, str) and InputBridge.issuer(state) is not None

    def start(self, call: SdkCall, work: Callable[[], Awaitable[Any]]) -> None:
        """Run the backend call (``work``) as ``call``'s task; the caller's context, and
        with it the relay it set, goes with it."""
        call.pump = asyncio.get_running_loop().create_task(_run(call, work))

    def take(self, state: str, owner: tuple[str, str | None]) -> SdkCall:
        """The call a retry's ``state`` names, if ``owner`` made it; else -32602."""
        call = self.bridge.take(state, owner)
        if call is None:
            raise MCPError(INVALID_PARAMS, UNKNOWN_STATE)
        return call

    async def resume(
        self, call: SdkCall, params: Mapping[str, Any] | None, relay: Relay, timeout: float
    ) -> Any:
        """A retry: answer the backend's asks with its `inputResponses`, then follow."""
        await self.bridge.answer(call, (params or {}).get("inputResponses"))
        return await self.follow(call, relay, timeout)

    async def follow(self, call: SdkCall, relay: Relay, timeout: float) -> Any:
        """Serve one round: send notifications on through ``relay`` (this round's), then
        return the call's result or an `input_required` result for its next question.
        Raises what the backend call raised, or BackendTimeout when ``timeout`` passes
        (audited with outcome ``timeout``, as on the other paths)."""
        try:
            async with asyncio.timeout(timeout):
                event = await _next(call, relay)
        except TimeoutError:
            await self.bridge.close(call, "timed out")
            raise BackendTimeout(
                f"tool call on server {call.server!r} timed out after {timeout:g}s"
            ) from None
        except asyncio.CancelledError:  # the agent went away (or shutdown)
            await self.bridge.close(call, "the client went away")
            raise
        if event.kind == "final":
            if isinstance(event.outcome, BaseException):
                raise event.outcome
            return event.outcome
        assert event.message is not None
        return types.InputRequiredResult.model_validate(
            self.bridge.park(call, [event.message], timeout)
        )


async def _next(call: SdkCall, relay: Relay) -> Event:
    """The call's next question or its outcome, sending notifications on meanwhile."""
    while True:
        event = await call.events.get()
        if event.kind != "note":
            return event
        await event.outcome(relay)


async def _run(call: SdkCall, work: Callable[[], Awaitable[Any]]) -> None:
    try:
        outcome: Any = await work()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        outcome = exc
    call.events.put_nowait(Event("final", outcome=outcome))
