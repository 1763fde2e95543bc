"""The request side's half of an audit row: the actor, the client and the answer's
size read out of the objects that live in the recording process, into a row on the
wire (forming.py does the rest: masking, capping, measuring, in the writer)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from mcp import types
from pydantic import BaseModel

from gateway.asgi_headers import HEADERS_KEY
from gateway.audit.entry import AuditEntry
from gateway.audit.forming import WIRE_LENGTH, Wire, mask_value
from gateway.auth.principal import Principal

__all__ = ["WIRE_LENGTH", "Wire", "actor_of", "result_size", "to_wire", "wire"]


def result_size(result: Any) -> int | None:
    """Bytes of a call's answer as the agent got it (JSON)."""
    if result is None:
        return None
    if isinstance(result, bytes | bytearray | memoryview):
        return len(result)
    if isinstance(result, types.CallToolResult | types.ReadResourceResult | types.GetPromptResult):
        return _content_size(result)
    if isinstance(result, BaseModel):
        return len(result.model_dump_json(by_alias=True, exclude_none=True))
    try:
        return len(orjson.dumps(result, default=str))
    except TypeError:
        return None


def _content_size(result: Any) -> int:
    """About the bytes of a result as sent: its texts and encoded data, plus the
    structured content (serialising the whole model per call cost tens of µs)."""
    blocks = getattr(result, "content", None) or getattr(result, "contents", None) or []
    if isinstance(result, types.GetPromptResult):
        blocks = [m.content for m in result.messages]
    size = 0
    for block in blocks:
        for field in ("text", "data", "blob"):
            value = getattr(block, field, None)
            if isinstance(value, str):
                size += len(value)
        resource = getattr(block, "resource", None)
        if resource is not None:
            size += len(getattr(resource, "text", None) or getattr(resource, "blob", None) or "")
    structured = getattr(result, "structured_content", None)
    if structured is not None:
        size += len(orjson.dumps(structured, default=str))
    return size


def _client(scope: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(user agent, MCP protocol version) from the request headers (of one sent twice,
    the last), from the dictionary the MCP front made when there is one."""
    headers: Mapping[bytes, bytes] | None = scope.get(HEADERS_KEY)
    if headers is not None:
        agent_value, protocol_value = headers.get(b"user-agent"), headers.get(_PROTOCOL)
        return (
            agent_value.decode("latin-1")[:256] if agent_value is not None else None,
            protocol_value.decode("latin-1")[:16] if protocol_value is not None else None,
        )
    agent = protocol = None
    for key, value in scope.get("headers") or ():
        if key == b"user-agent":
            agent = value.decode("latin-1")[:256]
        elif key == _PROTOCOL:
            protocol = value.decode("latin-1")[:16]
    return agent, protocol


_PROTOCOL = b"mcp-protocol-version"


_NO_ACTOR: tuple[None, ...] = (None,) * 7
_ACTOR_KEYS = ("user_id", "email", "key_id", "key_prefix", "team", "role", "auth_method")
# The last principal's actor columns: calls come in runs from the same (cached) one.
_last_actor: list[Any] = [None, _NO_ACTOR]


def _actor(principal: Principal | None, who: dict[str, Any] | None = None) -> tuple[Any, ...]:
    """The actor columns of ``principal`` (else of ``who``: an auth failure's fields)."""
    if principal is not None:
        if principal is _last_actor[0]:
            return _last_actor[1]  # type: ignore[no-any-return]
        actor = (
            principal.user_id,
            principal.email,
            principal.key_id,
            principal.key_prefix,
            principal.team_ids[0] if principal.team_ids else None,
            principal.role,
            principal.auth_method,
        )
        _last_actor[:] = principal, actor
        return actor
    if who:
        return tuple(map(who.get, _ACTOR_KEYS))
    return _NO_ACTOR


actor_of = _actor


def to_wire(entry: AuditEntry, event_id: str, mask: Any) -> Wire:
    """What the request path's process does to ``entry``: read out the actor, the client
    and the answer's size (objects that live there). ``mask``: the server's secrets, as
    the writer holds them (its SecretMask, then its index in a batch's list)."""
    return wire(
        event_id,
        entry.ts,
        entry.request_id,
        entry.trace_id,
        _actor(entry.principal, entry.actor),
        entry.scope,
        entry.action,
        entry.route,
        entry.server,
        entry.target,
        entry.via,
        _plain(entry.arguments),
        _plain(entry.detail) if entry.detail else None,
        entry.outcome,
        entry.error_code,
        entry.error,
        entry.latency_ms,
        entry.bytes_in,
        entry.bytes_out if entry.bytes_out is not None else result_size(entry.result),
        mask,
    )


def wire(
    event_id: str,
    ts: float,
    request_id: str | None,
    trace_id: str | None,
    actor: tuple[Any, ...],
    scope: Mapping[str, Any] | None,
    action: str,
    route: str | None,
    server: str | None,
    target: str | None,
    via: str | None,
    arguments: Any,
    detail: Any,
    outcome: str,
    error_code: str | None,
    error: str | None,
    latency_ms: float | None,
    bytes_in: int | None,
    bytes_out: int | None,
    mask: Any,
) -> Wire:
    """A row on the wire from its parts (:func:`to_wire` for an entry; a hot path with
    the parts at hand calls this directly). ``actor``: :func:`actor_of`'s."""
    scope = scope or {}
    client = scope.get("client")
    state = scope.get("state") or {}
    name, version = state.get("mcp_client") or (None, None)
    agent, protocol = _client(scope)
    return (
        event_id,
        ts,
        request_id,
        trace_id,
        *actor,
        client[0] if client else None,
        agent,
        name,
        version,
        protocol,
        action,
        route,
        server,
        target,
        via,
        arguments,
        detail,
        outcome,
        error_code,
        error,
        latency_ms,
        bytes_in,
        bytes_out,
        mask,
    )


def _plain(value: Any) -> Any:
    """``value`` if it is (almost certainly) plain JSON, else its masked JSON-like copy
    with no secrets known yet (models and sets become what they would be stored as)."""
    if value is None or type(value) in (dict, list, str, int, float, bool):
        return value
    return mask_value(value)
