"""The few HTTP answers the MCP front writes itself (before the SDK sees a request).

Refusals before any MCP message is looked at (401, an unknown server) are the
gateway's JSON error shape ``{code, message}``, as is everything on the legacy
`/messages/` endpoint. Refusals of a `/mcp` message (too large, an unknown or
foreign session, a duplicate id, the session cap) are JSON-RPC error objects, which
is what MCP clients parse; their ``data.code`` is the gateway's stable code.
"""

from __future__ import annotations

from typing import Any

import orjson
from mcp_types.jsonrpc import INVALID_REQUEST
from starlette.types import Message, Send

from gateway.asgi_replies import send_error, send_jsonrpc_error

SERVER_ERROR = -32000  # JSON-RPC's implementation-defined server error range


async def session_not_found(send: Send) -> None:
    """404 for a session that does not exist, has ended, or another key opened.

    One answer for all three, so it says nothing about sessions the caller does not own.
    """
    await send_jsonrpc_error(
        send,
        404,
        INVALID_REQUEST,
        "session not found: it has ended or belongs to another API key; "
        "start a new one with initialize",
        reason="session_not_found",
    )


async def ambiguous_session(send: Send) -> None:
    """400 for a request naming more than one session."""
    await send_jsonrpc_error(
        send,
        400,
        INVALID_REQUEST,
        "send exactly one Mcp-Session-Id header",
        reason="invalid_session_id",
    )


async def too_large(send: Send, limit: int) -> None:
    """413 for a body over ``MCPGW_MAX_REQUEST_BYTES``."""
    await send_jsonrpc_error(send, 413, INVALID_REQUEST, f"request body exceeds {limit} bytes")


async def duplicate_id(send: Send, request_id: Any) -> None:
    """400 for a request whose id is already in flight in its session.

    The error carries no id: one equal to the first request's could be taken for
    that request's answer, and the first request is still running and keeps its id.
    """
    await send_jsonrpc_error(
        send,
        400,
        INVALID_REQUEST,
        f"request id {orjson.dumps(request_id).decode()[:100]} is already in use in this session "
        "(a request with that id is still in flight); use a new id",
        reason="duplicate_request_id",
    )


async def too_many_sessions(
    send: Send, held: int, limit: int, idle_seconds: float, request_id: Any = None
) -> None:
    """429 for a new session over the key's ``MCPGW_MCP_MAX_SESSIONS_PER_KEY``."""
    await send_jsonrpc_error(
        send,
        429,
        SERVER_ERROR,
        f"this API key holds {held} open MCP sessions, the most it may hold "
        f"(MCPGW_MCP_MAX_SESSIONS_PER_KEY={limit}); close sessions you no longer need "
        f"(DELETE /mcp with their Mcp-Session-Id, or disconnect /sse streams) or wait for "
        f"idle ones to expire (after {idle_seconds:g}s without a request)",
        request_id,
        reason="too_many_sessions",
    )


# Codes for the SDK's own plain-text refusals (transport security, methods).
_SDK_ERROR_CODES = {
    400: "bad_request",
    403: "origin_not_allowed",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    421: "host_not_allowed",
}
_HINTS = {
    403: "; allowed origins are set with MCPGW_MCP_ALLOWED_ORIGINS",
    421: "; allowed hosts are set with MCPGW_MCP_ALLOWED_HOSTS",
}


def json_sdk_errors(send: Send, method: str) -> Send:
    """``send`` for one request the SDK serves, turning its plain-text error answers
    (an empty 405, "Invalid Host header", …) into the gateway's ``{code, message}``.

    JSON-RPC errors and event streams pass through untouched.
    """
    held: Message | None = None
    text = bytearray()

    async def wrapped(message: Message) -> None:
        nonlocal held
        if message["type"] == "http.response.start" and message["status"] >= 400:
            headers = message.get("headers", [])
            kind = next((v for k, v in headers if k.lower() == b"content-type"), b"")
            if not kind.startswith((b"application/json", b"text/event-stream")):
                held = message
                return
        if held is None:
            await send(message)
            return
        text.extend(message.get("body", b""))
        if message.get("more_body"):
            return
        await _sdk_error(send, held, bytes(text).decode("utf-8", "replace"), method)

    return wrapped


async def _sdk_error(send: Send, start: Message, text: str, method: str) -> None:
    status = int(start["status"])
    headers = start.get("headers", [])
    extra: list[tuple[bytes, bytes]] = []
    if status == 405:
        allow = next((v.decode("latin-1") for k, v in headers if k.lower() == b"allow"), "POST")
        extra.append((b"allow", allow.encode("latin-1")))
        text = f"method {method} is not allowed here; use {allow}"
    message = (text.strip() or f"HTTP {status}") + _HINTS.get(status, "")
    await send_error(send, status, _SDK_ERROR_CODES.get(status, "http_error"), message, extra)
