"""The one reader of `Authorization: Bearer <token>`, for REST and `/mcp` alike."""

from __future__ import annotations

from gateway.errors import Unauthenticated

MAX_TOKEN_LENGTH = 4096  # no key or token of ours is longer: refused before any lookup


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization`` header value; :class:`Unauthenticated` (401)
    when it is missing, not a Bearer credential, empty or too long."""
    if not header:
        raise Unauthenticated("missing Authorization header; send 'Authorization: Bearer <key>'")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("Authorization header must be 'Bearer <key>'")
    if len(token) > MAX_TOKEN_LENGTH:
        raise Unauthenticated("credential too long", code="invalid_api_key")
    return token
