"""`subscriptions/listen` on the gateway's MCP front, with resource subscriptions.

The SDK's :class:`~mcp.server.subscriptions.ListenHandler` serves the stream from an
event bus. The gateway feeds that bus with its catalog's list changes, and with the
updates of the resources an agent names in its filter: those are subscribed at their
backends for as long as the stream is open (counted with the 2025-11-25 sessions'
subscriptions, so a backend is subscribed once however many agents watch), and the
backend's updates are published on the bus under the URI the agent used.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPError

if TYPE_CHECKING:
    from gateway.mcp.handlers import GatewayHandlers

log = logging.getLogger("gateway.mcp")

_UNSUBSCRIBE_SECONDS = 10.0


class GatewayListen:
    """`on_subscriptions_listen` for the front's SDK servers."""

    def __init__(self, handlers: GatewayHandlers) -> None:
        self.handlers = handlers
        self.inner = ListenHandler(handlers.bus)

    async def __call__(self, ctx: Any, params: Any) -> Any:
        """Subscribe the filter's resources at their backends, serve the stream, then
        unsubscribe them (the stream ends when the agent goes away)."""
        wanted = list(getattr(params.notifications, "resource_subscriptions", None) or ())
        stream = object()  # this stream's identity among the subscribers
        subscribed: list[str] = []
        try:
            for uri in dict.fromkeys(wanted):
                try:
                    await self.handlers.subscription(ctx, uri, True, stream)
                except MCPError as exc:  # honoured anyway: it may never fire (the spec's rule)
                    log.info("listen: cannot subscribe", extra={"uri": uri, "error": str(exc)})
                else:
                    subscribed.append(uri)
            return await self.inner(ctx, params)
        finally:
            # The stream usually ends by the agent going away, which cancels this handler:
            # shielded, so the backends still hear the unsubscribe (bounded in time).
            with anyio.CancelScope(shield=True), anyio.move_on_after(_UNSUBSCRIBE_SECONDS):
                for uri in subscribed:
                    try:
                        await self.handlers.subscription(ctx, uri, False, stream)
                    except Exception as exc:  # the stream is over either way
                        log.info(
                            "listen: cannot unsubscribe", extra={"uri": uri, "error": str(exc)}
                        )
