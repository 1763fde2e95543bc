"""Relaying what a backend sends back during a request to the agent that made it.

The front sets :data:`CURRENT_RELAY` before calling a backend; the backend
session's callbacks (sampling, elicitation, roots, log messages, progress) look it
up. The lookup works wherever the backend's messages are handled in the caller's
context: in-process (``generated``) servers on the 2025-11-25 protocol. A shared
stdio/HTTP session reads its messages on its own task, so there the callbacks
find no relay and answer with an error — per-caller backend sessions are the
follow-up that lifts this.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Protocol

from mcp import types

NO_CLIENT = -32601  # "method not found": nobody on this path can answer the request


class Relay(Protocol):
    """The agent-side peer a backend request is forwarded to."""

    async def request(self, method: str, params: Any) -> Any:
        """Send a server-to-client request (sampling, elicitation, roots); its typed result."""

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        """Forward a log message notification."""

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        """Forward progress of the request being served."""


CURRENT_RELAY: ContextVar[Relay | None] = ContextVar("mcpgw_relay", default=None)


def no_relay(what: str) -> types.ErrorData:
    return types.ErrorData(
        code=NO_CLIENT,
        message=f"{what} is not available: no client connection to relay it to",
    )


async def _forward(what: str, method: str, params: Any) -> Any:
    relay = CURRENT_RELAY.get()
    if relay is None:
        return no_relay(what)
    return await relay.request(method, params)


async def relay_sampling(
    context: Any, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult | types.ErrorData:
    result: types.CreateMessageResult | types.ErrorData = await _forward(
        "sampling", "sampling/createMessage", params
    )
    return result


async def relay_elicitation(
    context: Any, params: types.ElicitRequestParams
) -> types.ElicitResult | types.ErrorData:
    result: types.ElicitResult | types.ErrorData = await _forward(
        "elicitation", "elicitation/create", params
    )
    return result


async def relay_roots(context: Any) -> types.ListRootsResult | types.ErrorData:
    result: types.ListRootsResult | types.ErrorData = await _forward("roots", "roots/list", None)
    return result


async def relay_log(params: types.LoggingMessageNotificationParams) -> None:
    relay = CURRENT_RELAY.get()
    if relay is not None:
        await relay.log(params)


async def relay_progress(progress: float, total: float | None, message: str | None) -> None:
    relay = CURRENT_RELAY.get()
    if relay is not None:
        await relay.progress(progress, total, message)
