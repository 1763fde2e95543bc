"""What a backend asks outside any call, for the agent of the fast call in flight.

A 2025-11-25 backend may ask its client something on its session's own GET stream,
tied to no request: the Python SDK's `ctx.session.list_roots()` does (FastMCP's too),
and so does server-everything's roots sync. The gateway's SDK session to the backend
receives it, and :class:`~gateway.servers.runtimes.relay.Callers` hands it to the one
request in flight on that session (several in flight: refused, as the one asking cannot
be told apart). A fast call counts as one — FastPath.serve adds the :class:`FastCall`
to its route's callers for the call's duration, a dict insert and delete — and this
module is what it does when asked (sampling, elicitation or roots):

- A 2025-11-25 agent with a session gets the request on the call's response stream (a
  backend answer that was to come as JSON then comes as SSE), re-numbered as in-call
  requests are; its POSTed answer comes back through ``FastPath._route_message`` to a
  future here, and goes to the backend as the SDK session's reply.
- A 2026-07-28 agent has no session to be asked on: it is answered at once with
  `input_required` (the question and a `requestState`: gateway/servers/mcp/input_bridge.py),
  sent from here while the call's task waits for the backend. The backend's call stays
  open: from then on the call's task hands what the backend sends to the pending call
  (``FastCall.parked``: its answer, notifications, further questions) instead of the
  agent, and ignores the agent's connection closing (that is the end of the first
  round, not a cancel). The agent's retry answers the question — the bridge's reply,
  addressed to our id, settles the future (``FastPath._post_or_settle``) — and follows
  the same call, as for a question asked in the call.
- An agent without a session cannot be asked: refused, as on the SDK path.

Nothing here runs for a call the backend asks nothing outside of.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
from mcp import types
from mcp_types.jsonrpc import INTERNAL_ERROR, REQUEST_TIMEOUT
from pydantic import ValidationError

from gateway.servers.mcp.input_bridge import Event, PendingCall
from gateway.servers.runtimes.relay import no_relay

if TYPE_CHECKING:
    from gateway.servers.mcp.fastcall import FastCall

# method → (what it is called in errors, the result type the SDK session expects)
_ASKED: dict[str, tuple[str, type[Any]]] = {
    "roots/list": ("roots", types.ListRootsResult),
    "sampling/createMessage": ("sampling", types.CreateMessageResult),
    "elicitation/create": ("elicitation", types.ElicitResult),
}


async def ask_agent(call: FastCall, method: str, params: Any) -> Any:
    """Ask ``call``'s agent what the backend asked outside the call; the typed answer
    (or the :class:`~mcp.types.ErrorData` the backend's session should reply with)."""
    what, result_type = _ASKED[method]
    request = call.request
    if not request.modern and request.session_id is None:
        return no_relay(what)
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": None, "method": method}
    if params is not None:
        message["params"] = params.model_dump(mode="json", by_alias=True, exclude_none=True)
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[dict[str, Any]] = loop.create_future()
    # Re-numbered; the agent's answer comes to ``answer`` (FastPath._route_message, or the
    # input bridge's reply for a 2026 agent), and the backend's SDK session replies with
    # what this returns.
    relayed = call.fast.relay_request(call.route, message, request.session_id or "", answer)
    if call.asking is None:
        call.asking = []
    call.asking.append(answer)
    timeout = call.fast.servers.timeout_for(call.target)
    try:
        if request.modern:
            await _ask_modern(call, orjson.loads(relayed), timeout)
        else:
            await call._stream(relayed)
    except Exception as exc:  # the agent's response is already complete: too late
        answer.cancel()
        return types.ErrorData(
            code=INTERNAL_ERROR, message=f"{what} could not be relayed to the client: {exc}"
        )
    done, _ = await asyncio.wait({answer}, timeout=timeout)
    if not done or answer.cancelled():
        answer.cancel()
        why = "the call ended" if done else f"no answer came within {timeout:g}s"
        return types.ErrorData(code=REQUEST_TIMEOUT, message=f"{what}: {why} at the gateway")
    return _typed(what, result_type, answer.result())


async def _ask_modern(call: FastCall, ask: dict[str, Any], timeout: float) -> None:
    """Put the question to a 2026-07-28 agent. The first one parks the call and is the
    agent's answer now (`input_required`); later ones wait in the pending call for the
    agent's retry to follow it."""
    if call.parked is not None:
        call.parked.events.put_nowait(Event("ask", ask))
        return
    # Parked before the first await: what the backend sends from now on is the retry's.
    pending = call.parked = PendingCall(
        call.owner, call.route.server, call.route, call.backend_id, target=call.target
    )
    result = call.fast.bridge.park(pending, [ask], timeout)
    body = orjson.dumps({"jsonrpc": "2.0", "id": call.request.id, "result": result})
    if not call.streaming:
        await call._json(body)
        return
    # Notifications went first: the answer ends the stream (FastCall._stream's framing;
    # _stream itself now hands data to the pending call).
    event = b"event: message\r\ndata: " + body + b"\r\n\r\n"
    await call.send({"type": "http.response.body", "body": event, "more_body": True})
    await call.send({"type": "http.response.body", "body": b"", "more_body": False})


def hand_over(parked: PendingCall, message: dict[str, Any]) -> bool:
    """The backend's answer to a parked call: for the retry that follows it."""
    parked.events.put_nowait(Event("final", message))
    result = message.get("result")
    failed = isinstance(result, dict) and bool(result.get("isError", False))
    return "error" not in message and not failed


def abandon(call: FastCall) -> None:
    """The call ended: stop waiting for answers its agent will not send on it."""
    for answer in call.asking or ():
        answer.cancel()


def settle(answer: asyncio.Future[dict[str, Any]], reply: dict[str, Any]) -> None:
    """Deliver the agent's reply (a JSON-RPC response) to a waiting question."""
    if not answer.done():
        answer.set_result(reply)


def _typed(what: str, result_type: type[Any], reply: dict[str, Any]) -> Any:
    error = reply.get("error")
    try:
        if error is not None:
            return types.ErrorData.model_validate(error)
        return result_type.model_validate(reply.get("result"))
    except ValidationError:
        return types.ErrorData(
            code=INTERNAL_ERROR, message=f"the client's answer to {what} is not valid"
        )
