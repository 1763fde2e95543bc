"""Namespaced resource URIs for the aggregated endpoint.

Two servers may both offer ``file:///README.md``; through `/mcp` they appear as
``mcpgw://<server>/<percent-encoded original>``. Template placeholders (``{id}``)
stay unencoded so clients can still expand them, and decoding an expanded URI
gives the backend's own expanded URI back.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

SCHEME = "mcpgw://"


def wrap(server: str, uri: str) -> str:
    return f"{SCHEME}{server}/{quote(uri, safe='{}')}"


def unwrap(uri: str) -> tuple[str, str] | None:
    """``(server, original uri)`` for a namespaced URI, else None."""
    if not uri.startswith(SCHEME):
        return None
    server, sep, rest = uri[len(SCHEME) :].partition("/")
    if not sep or not server or not rest:
        return None
    return server, unquote(rest)
