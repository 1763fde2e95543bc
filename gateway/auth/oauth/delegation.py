"""Delegating MCP authorization to an external authorization server (the identity
provider): does it support what MCP clients need? Checked at start-up and said in
words, so an operator learns it from the log rather than from a client's raw error.

MCP clients need (specification 2025-11-25, Authorization): authorization server
metadata (RFC 8414, or OpenID discovery); the authorization code grant with PKCE
S256; and a way to get a client id — dynamic client registration (RFC 7591) or client
ID metadata documents — unless every client is registered by hand. Tokens must be
for this gateway (RFC 8707 resource indicators, or an audience the gateway expects).
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.pinned_http import httpx_client
from gateway.ssrf import HostPins, check_url

log = logging.getLogger("gateway.auth")

_PATHS = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")


async def authorization_server_metadata(issuer: str, allow_private: bool) -> dict[str, Any]:
    """The server's RFC 8414 metadata (or OpenID discovery document); raises when
    neither can be read."""
    base = issuer.rstrip("/")
    last: Exception | None = None
    for path in _PATHS:
        url = base + path
        try:
            pin = await check_url(url, allow_private)
            async with httpx_client(url, HostPins.of(pin), timeout=10.0) as client:
                response = await client.get(url, headers={"Accept": "application/json"})
            if response.status_code == 200:
                found = response.json()
                if isinstance(found, dict):
                    return found
            last = ValueError(f"{url} answered {response.status_code}")
        except Exception as exc:  # unreachable, refused by the SSRF guard, not JSON
            last = exc
    raise ValueError(f"no authorization server metadata at {base}: {last}")


def problems(metadata: dict[str, Any]) -> list[str]:
    """What MCP clients will miss at this server, in words (empty: nothing)."""
    found = []
    if not metadata.get("authorization_endpoint") or not metadata.get("token_endpoint"):
        found.append("it names no authorization or token endpoint")
    if "S256" not in (metadata.get("code_challenge_methods_supported") or []):
        found.append(
            "it does not advertise PKCE S256 (code_challenge_methods_supported): MCP "
            "clients must refuse to use it"
        )
    grants = metadata.get("grant_types_supported")
    if grants is not None and "authorization_code" not in grants:
        found.append("it does not offer the authorization code grant")
    if not metadata.get("registration_endpoint") and not metadata.get(
        "client_id_metadata_document_supported"
    ):
        found.append(
            "it has no dynamic client registration and no client ID metadata documents: "
            "MCP clients cannot register themselves; register a client for each of them "
            "at the provider (or let the gateway be the authorization server: unset "
            "MCPGW_OAUTH_AUTHORIZATION_SERVER)"
        )
    return found


async def delegation_problems(issuer: str, allow_private: bool) -> list[str]:
    """What MCP clients will miss at the external server, its metadata read now."""
    try:
        return problems(await authorization_server_metadata(issuer, allow_private))
    except ValueError as exc:
        return [str(exc)]


async def check_delegation(issuer: str, allow_private: bool) -> None:
    """Log, in words, what MCP clients will miss at the external server."""
    found = await delegation_problems(issuer, allow_private)
    for problem in found:
        log.warning(
            "MCPGW_OAUTH_AUTHORIZATION_SERVER=%s: %s", issuer, problem, extra={"check": "oauth"}
        )
    if not found:
        log.info("MCP clients are sent to %s to authorize", issuer)
