"""Forming a stored audit row from a row on the wire: masking, capping, measuring.

This is the writer's work (the audit writer process, or the store in the recording
process); it imports nothing of the gateway's request side, so the writer process
starts light. The request side's half, reading out what only it has, is rows.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.audit.chain import HASHED
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
    dump = getattr(value, "model_dump", None)  # a pydantic model (not imported here)
    if callable(dump):
        return mask_value(dump(mode="json", by_alias=True), secrets)
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


# What from_wire gives, in order: every hashed column but the stream's two (the store
# adds those when the row gets its place in the chain).
CONTENT = HASHED[:-2]

# A row on its way from the request path's process to the store: the id, the raw values
# (arguments, detail and error unmasked), then the index of the server's secrets in the
# batch's list of them. Plain JSON types only, so it can cross to the writer process.
Wire = tuple[Any, ...]
WIRE_LENGTH = 30
_W_TARGET, _W_ARGUMENTS, _W_DETAIL, _W_ERROR, _W_LATENCY = 19, 21, 22, 25, 26


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
