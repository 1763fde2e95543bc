"""Turning an :class:`AuditEntry` into a stored row: the actor and client read out,
arguments and errors masked and capped, the result measured. Runs in the writer."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel

from gateway.audit.entry import AuditEntry
from gateway.observability.masking import MASK, SECRET_FIELD_NAMES, SecretMask, mask_text

MAX_ARGUMENTS_BYTES = 8192  # stored JSON of arguments/detail beyond this is cut, with a marker
MAX_ERROR_CHARS = 2000
BYTES_PER_TOKEN = 4  # the usual estimate for English text and JSON


def mask_value(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    """A JSON-like copy of ``value``: values under secret-named keys become ``***``;
    every string has ``secrets`` and token shapes masked."""
    if isinstance(value, str):
        return mask_text(value, secrets)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = mask_text(str(key), secrets)
            if SECRET_FIELD_NAMES.search(name) and item not in (None, "", {}, []):
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
    text = orjson.dumps(mask_value(value, secrets), option=orjson.OPT_SORT_KEYS).decode()
    if len(text) <= MAX_ARGUMENTS_BYTES:
        return text
    marker = {"_bytes": len(text), "_preview": text[: MAX_ARGUMENTS_BYTES // 2], "_truncated": True}
    return orjson.dumps(marker, option=orjson.OPT_SORT_KEYS).decode()


def result_size(result: Any) -> int | None:
    """Bytes of a call's answer as the agent got it (JSON)."""
    if result is None:
        return None
    if isinstance(result, bytes | bytearray | memoryview):
        return len(result)
    if isinstance(result, BaseModel):
        return len(result.model_dump_json(by_alias=True, exclude_none=True))
    try:
        return len(orjson.dumps(result, default=str))
    except TypeError:
        return None


def _header(scope: Mapping[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return str(value.decode("latin-1"))
    return None


def to_row(entry: AuditEntry) -> dict[str, Any]:
    """The stored columns of ``entry`` (without the chain's, which the writer adds)."""
    secrets = entry.mask.values if isinstance(entry.mask, SecretMask) else ()
    row: dict[str, Any] = dict.fromkeys(_ACTOR, None)
    principal = entry.principal
    if principal is not None:
        row.update(
            actor_user_id=principal.user_id,
            actor_email=principal.email,
            actor_key_id=principal.key_id,
            actor_key_prefix=principal.key_prefix,
            actor_team=principal.team_ids[0] if principal.team_ids else None,
            actor_role=principal.role,
            auth_method=principal.auth_method,
        )
    elif entry.actor:
        row.update({f"actor_{k}" if k != "auth_method" else k: v for k, v in entry.actor.items()})
    scope = entry.scope or {}
    client = scope.get("client")
    state = scope.get("state") or {}
    mcp_client = state.get("mcp_client") or (None, None)
    bytes_out = entry.bytes_out if entry.bytes_out is not None else result_size(entry.result)
    error = entry.error
    if error is not None:
        error = mask_text(error, secrets)[:MAX_ERROR_CHARS]
    row.update(
        id=uuid.uuid4().hex,
        ts=datetime.fromtimestamp(entry.ts, UTC),
        request_id=entry.request_id,
        trace_id=None,
        client_ip=client[0] if client else None,
        user_agent=(_header(scope, b"user-agent") or "")[:256] or None,
        client_name=mcp_client[0],
        client_version=mcp_client[1],
        protocol=state.get("mcp_protocol") or _header(scope, b"mcp-protocol-version"),
        action=entry.action,
        route=entry.route,
        server=entry.server,
        target=entry.target,
        via=entry.via,
        arguments=stored_json(entry.arguments, secrets),
        detail=stored_json(entry.detail, secrets) if entry.detail else None,
        outcome=entry.outcome,
        error_code=entry.error_code,
        error=error,
        latency_ms=None if entry.latency_ms is None else round(entry.latency_ms, 3),
        bytes_in=entry.bytes_in,
        bytes_out=bytes_out,
        tokens=None if bytes_out is None else -(-bytes_out // BYTES_PER_TOKEN),
    )
    return row


_ACTOR = (
    "actor_user_id",
    "actor_email",
    "actor_key_id",
    "actor_key_prefix",
    "actor_team",
    "actor_role",
    "auth_method",
)
