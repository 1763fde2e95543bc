"""The legacy HTTP+SSE transport (2024-11-05 clients): `GET /sse` and `POST /messages/`.

The SDK's :class:`SseServerTransport` does the protocol; the gateway adds the
session rules it shares with `/mcp` (see :mod:`gateway.mcp.sessions`): a session
belongs to the key that opened it, counts against that key's cap, and is named
only in its canonical form.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from mcp.server.lowlevel import Server
from mcp.server.sse import SseServerTransport
from starlette.types import Message, Receive, Scope, Send

from gateway.asgi_replies import send_error
from gateway.auth.principal import Principal
from gateway.mcp.replies import json_sdk_errors, too_many_sessions
from gateway.mcp.sessions import CANONICAL_SSE_SESSION, SessionRegistry

# The first event of the stream, as the SDK writes it: the POST endpoint with the id.
_ENDPOINT_EVENT = re.compile(
    rb"event: endpoint\r?\ndata: [^\r\n]*[?&]session_id=([0-9a-f]{32})\r?\n"
)


class LegacySse:
    """`GET /sse` (the event stream) and `POST /messages/?session_id=…` (one message)."""

    def __init__(
        self,
        transport: SseServerTransport,
        server: Server[Any],
        sessions: SessionRegistry,
        idle_seconds: float,
    ) -> None:
        self.transport = transport
        self.server = server
        self.sessions = sessions
        self.idle_seconds = idle_seconds

    async def stream(
        self, scope: Scope, receive: Receive, send: Send, principal: Principal
    ) -> None:
        """GET /sse: the event stream; its first event names the POST endpoint."""
        if not self.sessions.reserve(principal):
            held, limit = self.sessions.held(principal), self.sessions.max_per_key
            await too_many_sessions(send, held, limit, self.idle_seconds)
            return
        session_id: str | None = None
        first = True

        async def remember_endpoint(message: Message) -> None:
            nonlocal session_id, first
            # Only the stream's first event names the session. Everything after it is
            # the agent's traffic (tool results included), never read for ids: a result
            # saying "session_id=<someone else's>" must not make that session ours.
            body = message.get("body", b"") if message["type"] == "http.response.body" else b""
            if first and body:
                first = False
                found = _ENDPOINT_EVENT.match(body)
                if found:
                    session_id = found.group(1).decode()
                    self.sessions.opened(session_id, principal, reserved=True)
            await send(message)

        try:
            async with self.transport.connect_sse(
                scope, receive, json_sdk_errors(remember_endpoint, scope["method"])
            ) as streams:
                read, write = streams
                await self.server.run(read, write, self.server.create_initialization_options())
        except ValueError:
            return  # rejected by the Host/Origin check; the transport already answered
        finally:
            # The stream ended (agent disconnected): the session is gone, its slot free.
            if session_id is not None:
                self.sessions.closed(session_id)
            else:
                self.sessions.unreserve(principal)

    async def message(
        self, scope: Scope, receive: Receive, send: Send, principal: Principal
    ) -> None:
        """POST /messages/?session_id=…: one message into that SSE session."""
        query = scope.get("query_string", b"").decode("latin-1")
        ids = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "session_id"]
        if len(ids) != 1 or not CANONICAL_SSE_SESSION.fullmatch(ids[0]):
            await send_error(
                send,
                400,
                "invalid_session_id",
                "session_id must be given once, exactly as the /sse endpoint event names it "
                "(32 lowercase hex digits)",
            )
            return
        session_id = ids[0]
        if not self.sessions.owns(session_id, principal):
            await send_error(send, 404, "session_not_found", "no such session")
            return
        # The SDK parses the query string again: hand it exactly the id that was checked.
        checked = {**scope, "query_string": b"session_id=" + session_id.encode()}
        await self.transport.handle_post_message(
            checked, receive, json_sdk_errors(send, scope["method"])
        )
