"""The span of one connection of a backend session (``backend.connect``), from the
attempt until the session is up or has failed.

The first connection is made for the call (or start) that needed it, so its span is
that call's child; a reconnection after a drop belongs to no call (the supervisor task
still carries the context of the call that started it), so it starts a trace of its
own, recorded at the root ratio. Nothing while tracing is off.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from opentelemetry.trace import SpanKind, StatusCode

from gateway.observability.tracing import detached

if TYPE_CHECKING:
    from gateway.servers.runtimes.base import RuntimeContext, ServerSpec


class ConnectSpan:
    """``with``-less: it ends when :meth:`connected` or :meth:`failed` says so (the
    session it covers the opening of stays open long after)."""

    def __init__(self, ctx: RuntimeContext, spec: ServerSpec, reconnect: bool) -> None:
        self._stack = contextlib.ExitStack()
        attributes = {
            "mcpgw.server": spec.name,
            "mcpgw.server.type": spec.type,
            "mcpgw.backend.reconnect": reconnect,
        }
        self.span = self._stack.enter_context(
            detached(
                ctx.telemetry, "backend.connect", attributes, kind=SpanKind.CLIENT, fresh=reconnect
            )
        )

    def connected(self, protocol_version: str | None) -> None:
        span = self.span
        if span is not None and protocol_version and span.is_recording():
            span.set_attribute("mcp.protocol.version", protocol_version)
        self.close()

    def failed(self, error: BaseException, message: str) -> None:
        span = self.span
        if span is not None and span.is_recording():
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(StatusCode.ERROR, message)
        self.close()

    def close(self) -> None:
        """End the span (once; later calls do nothing)."""
        self._stack.close()
