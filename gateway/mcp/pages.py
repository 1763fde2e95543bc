"""Opaque, composite pagination cursors for the lists `/mcp` serves.

A cursor encodes the catalog version it was cut from and an offset; a cursor
from an older catalog, or one that was tampered with, is an invalid-params error
(the client starts over), so a page never silently skips or repeats an item.
"""

from __future__ import annotations

import base64
import json
from typing import TypeVar

from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INVALID_PARAMS

T = TypeVar("T")
PAGE_SIZE = 500


def encode(version: int, offset: int) -> str:
    raw = json.dumps({"v": version, "o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, version: int) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset = int(data["o"])
        same_catalog = int(data["v"]) == version
    except (ValueError, KeyError, TypeError):
        raise MCPError(INVALID_PARAMS, "invalid cursor") from None
    if not same_catalog:
        raise MCPError(INVALID_PARAMS, "the list changed since this cursor; list again")
    if offset < 0:
        raise MCPError(INVALID_PARAMS, "invalid cursor")
    return offset


def page(
    items: list[T], cursor: str | None, version: int, size: int = PAGE_SIZE
) -> tuple[list[T], str | None]:
    """One page of ``items`` and the cursor of the next (None at the end)."""
    offset = decode(cursor, version) if cursor else 0
    chunk = items[offset : offset + size]
    following = offset + size
    return chunk, encode(version, following) if following < len(items) else None
