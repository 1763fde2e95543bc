"""A request's headers as one dictionary, made once per request and shared by what
reads them on the `/mcp` hot path: the MCP front (credentials, session), the fast path
(content negotiation, MCP headers) and the call's audit row (user agent, protocol).

Each of them used to walk the header list again: a few per cent of a cached answer.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

# Where the dictionary is kept in the ASGI scope.
HEADERS_KEY = "mcpgw.headers"


def header_map(scope: MutableMapping[str, Any]) -> dict[bytes, bytes]:
    """The request's headers by name (lower case, as ASGI gives them); of a header sent
    more than once, the last value. Made on first use, so call it only once the scope's
    header list is final (the front trims values first)."""
    found: dict[bytes, bytes] | None = scope.get(HEADERS_KEY)
    if found is None:
        found = scope[HEADERS_KEY] = dict(scope.get("headers") or ())
    return found


def first_header(scope: MutableMapping[str, Any], name: bytes) -> bytes | None:
    """The first value of header ``name`` (what the SDK and the auth code read), from
    :func:`header_map` unless some header was sent more than once."""
    headers = header_map(scope)
    raw = scope.get("headers") or ()
    if len(headers) == len(raw):  # no name repeated: the dictionary has every value
        return headers.get(name)
    for key, value in raw:
        if key == name:
            return bytes(value)
    return None
