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
- A 2026-07-28 agent (no session to be asked on) is refused with a clear error for
  now: it could only be asked in the call's result (`input_required`), which the call's
  task, blocked reading the backend's answer, cannot send.
- An agent without a session cannot be asked: refused, as on the SDK path.

Nothing here runs for a call the backend asks nothing outside of.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from mcp import types
from mcp_types.jsonrpc import INTERNAL_ERROR, REQUEST_TIMEOUT
from pydantic import ValidationError

from gateway.servers.runtimes.relay import NO_CLIENT, no_relay

if TYPE_CHECKING:
    from gateway.mcp.fastcall import FastCall

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
    if request.modern:
        return types.ErrorData(
            code=NO_CLIENT,
            message=f"{what} is not available: the server asked outside the call (on its "
            "session's own stream), and a 2026-07-28 client can be asked only in a call's result",
        )
    if request.session_id is None:
        return no_relay(what)
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": None, "method": method}
    if params is not None:
        message["params"] = params.model_dump(mode="json", by_alias=True, exclude_none=True)
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[dict[str, Any]] = loop.create_future()
    # Re-numbered; the agent's answer comes to ``answer`` (FastPath._route_message), and
    # the backend's SDK session replies with what this returns.
    relayed = call.fast.relay_request(call.route, message, request.session_id, answer)
    if call.asking is None:
        call.asking = []
    call.asking.append(answer)
    timeout = call.fast.servers.call_timeout
    try:
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
