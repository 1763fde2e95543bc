"""Every use of an MCP SDK (or FastMCP) internal, in one place.

The gateway needs a few things the SDKs do not expose publicly: whether a client
session's reader has ended, the hook that writes a 2026-07-28 request's `_meta`, the
raw-result sender, an agent's long-lived connection behind a per-request session,
the session manager's live sessions, and the HTTP transport's per-POST abort scopes.
Each is reached through one function here, and tests/unit/test_sdk_compat.py checks
each against the installed SDK: an `mcp` upgrade that renames one fails there, by
name, not somewhere downstream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.client.streamable_http import StreamableHTTPTransport

Stamp = Callable[[dict[str, Any], Any], None]


def client_dispatcher(session: Any) -> Any:
    """The JSON-RPC dispatcher of a client session (it sends, and returns raw results);
    raises AttributeError or RuntimeError when the session has none (not connected)."""
    return session._dispatcher


def dispatcher_closed(dispatcher: Any) -> bool:
    """Has the dispatcher's read loop ended? (Unknown → False: assume open.)"""
    return bool(getattr(dispatcher, "_closed", False))


def stamp_request(session: Any, data: dict[str, Any], opts: Any) -> None:
    """Write a client session's request envelope into ``data``/``opts``, as it does for
    every request it sends (protocol version, capabilities, and our wrappers')."""
    session._stamp(data, opts)


def wrap_request_stamp(session: Any, wrap: Callable[[Stamp], Stamp]) -> None:
    """Replace the client session's request-envelope writer with ``wrap(original)``."""
    session._stamp = wrap(session._stamp)


def agent_connection(server_session: Any) -> Any:
    """The agent's long-lived connection behind a per-request server session, if any."""
    return getattr(server_session, "_connection", None)


def live_server_session(manager: Any, session_id: str) -> bool:
    """Does the Streamable HTTP session manager hold a live session ``session_id``?"""
    transport = getattr(manager, "_server_instances", {}).get(session_id)
    return transport is not None and not getattr(transport, "is_terminated", True)


def http_transport(opened: Any) -> StreamableHTTPTransport | None:
    """The transport of an entered ``streamable_http_client(...)`` context (a local of
    the SDK's generator), if it can be found."""
    frame = getattr(getattr(opened, "gen", None), "ag_frame", None)
    transport = frame.f_locals.get("transport") if frame is not None else None
    return transport if isinstance(transport, StreamableHTTPTransport) else None


def in_flight_posts(transport: StreamableHTTPTransport) -> dict[Any, Any] | None:
    """The transport's POSTs in flight by request id (each with its abort ``scope``)."""
    posts = getattr(transport, "_in_flight_posts", None)
    return posts if isinstance(posts, dict) else None


def cancellation_hook(transport: StreamableHTTPTransport) -> Callable[[Any], bool] | None:
    """The transport's handler of an outgoing `notifications/cancelled`, if present."""
    hook = getattr(transport, "_consume_modern_cancellation", None)
    return hook if callable(hook) else None


def set_cancellation_hook(transport: StreamableHTTPTransport, hook: Callable[[Any], bool]) -> None:
    """Replace :func:`cancellation_hook` on this one transport instance."""
    transport._consume_modern_cancellation = hook  # type: ignore[method-assign,assignment]


def fastmcp_lowlevel(obj: Any) -> Any:
    """The low-level SDK server a FastMCP object wraps (None for anything else)."""
    return getattr(obj, "_mcp_server", None)
