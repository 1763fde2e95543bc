"""Turning an :class:`AuditEntry` into a stored row: the actor and client read out,
arguments and errors masked and capped, the result measured. Runs in the writer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from mcp import types
from pydantic import BaseModel

from gateway.audit.chain import HASHED
from gateway.audit.entry import AuditEntry
from gateway.auth.principal import Principal
from gateway.observability.masking import (
    MASK,
    MIN_SECRET_LENGTH,
    holds_secret,
    mask_text,
    names_secret,
)

MAX_ARGUMENTS_BYTES = 8192  # stored JSON of arguments/detail beyond this is cut, with a marker
MAX_ERROR_CHARS = 2000
BYTES_PER_TOKEN = 4  # the usual estimate for English text and JSON


_SCALARS = frozenset({bool, int, float})


def mask_value(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    """A JSON-like copy of ``value``: values under secret-named keys become ``***``;
    every string has ``secrets`` and token shapes masked."""
    if isinstance(value, str):
        return mask_text(value, secrets)
    if value is None or type(value) in _SCALARS:
        return value
    if isinstance(value, dict | Mapping):  # dict first: the ABC check alone costs more
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = mask_text(str(key), secrets)
            if names_secret(name) and item not in (None, "", {}, []):
                out[name] = MASK
            else:
                out[name] = mask_value(item, secrets)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [mask_value(item, secrets) for item in value]
    if isinstance(value, BaseModel):
        return mask_value(value.model_dump(mode="json", by_alias=True), secrets)
    return mask_text(str(value), secrets)


def stored_json(value: Any, secrets: tuple[str, ...] = ()) -> str | None:
    """Masked canonical JSON text of ``value``, cut to :data:`MAX_ARGUMENTS_BYTES`
    (then ``{"_truncated": true, "_bytes": N, "_preview": "…"}``)."""
    if value is None:
        return None
    text = _plain_json(value, secrets)
    if text is None:
        text = orjson.dumps(mask_value(value, secrets), option=orjson.OPT_SORT_KEYS).decode()
    if len(text) <= MAX_ARGUMENTS_BYTES:
        return text
    marker = {"_bytes": len(text), "_preview": text[: MAX_ARGUMENTS_BYTES // 2], "_truncated": True}
    return orjson.dumps(marker, option=orjson.OPT_SORT_KEYS).decode()


def _plain_json(value: Any, secrets: tuple[str, ...]) -> str | None:
    """The JSON text of ``value`` when masking would change nothing in it, else None.

    Checked on the text, in one pass per pattern instead of one per string: without a
    backslash (JSON escapes only quotes, backslashes and control characters) every key
    and string appears in the text verbatim, and the patterns are unanchored, so a
    token shape, a secret-named key or a sealed secret in any of them shows in the text.
    """
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # not plain JSON (models, sets, non-string keys): the slow way
        return None
    if "\\" in text or names_secret(text) or holds_secret(text):
        return None
    for secret in secrets:
        if len(secret) >= MIN_SECRET_LENGTH and secret in text:
            return None
    return text


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
    """(user agent, MCP protocol version) from the request headers, in one pass."""
    agent = protocol = None
    for key, value in scope.get("headers") or ():
        if key == b"user-agent":
            agent = value.decode("latin-1")[:256]
        elif key == b"mcp-protocol-version":
            protocol = value.decode("latin-1")[:16]
    return agent, protocol


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


# What from_wire gives, in order: every hashed column but the stream's two (the store
# adds those when the row gets its place in the chain).
CONTENT = HASHED[:-2]

# A row on its way from the request path's process to the store: the id, the raw values
# (arguments, detail and error unmasked), then the index of the server's secrets in the
# batch's list of them. Plain JSON types only, so it can cross to the writer process.
Wire = tuple[Any, ...]
WIRE_LENGTH = 30
_W_TARGET, _W_ARGUMENTS, _W_DETAIL, _W_ERROR, _W_LATENCY = 19, 21, 22, 25, 26


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


def from_wire(wire: Wire, masks: Sequence[Sequence[str]]) -> tuple[Any, ...]:
    """The stored values of a wired row, in :data:`CONTENT` order: masked, capped and
    measured (the writer's work, off the request path)."""
    mask = wire[-1]
    secrets = tuple(masks[mask]) if mask is not None else ()
    error, target = wire[_W_ERROR], wire[_W_TARGET]
    if error is not None:  # PostgreSQL's text holds no NUL; a backend's message may
        error = mask_text(str(error).replace("\x00", ""), secrets)[:MAX_ERROR_CHARS]
    if target is not None and "\x00" in target:
        target = target.replace("\x00", "")
    arguments = stored_json(wire[_W_ARGUMENTS], secrets)
    detail = wire[_W_DETAIL]
    bytes_in, bytes_out = wire[_W_LATENCY + 1], wire[_W_LATENCY + 2]
    if bytes_in is None and arguments is not None:
        bytes_in = len(arguments)  # the arguments' JSON (as stored: masked, perhaps cut)
    latency = wire[_W_LATENCY]
    return (
        wire[0],
        datetime.fromtimestamp(wire[1], UTC),
        *wire[2:_W_TARGET],  # request id, trace id, actor, client, action, route, server
        target,
        wire[_W_TARGET + 1],  # via
        arguments,
        stored_json(detail, secrets) if detail else None,
        wire[_W_ERROR - 2],  # outcome
        wire[_W_ERROR - 1],  # error code
        error,
        None if latency is None else round(latency, 3),
        bytes_in,
        bytes_out,
        None if bytes_out is None else -(-bytes_out // BYTES_PER_TOKEN),
    )
