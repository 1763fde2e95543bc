"""Which protected resources the gateway serves, by what URL, and the metadata that
tells an MCP client where to get a token for each (RFC 9728, RFC 8707).

A resource is an absolute URL: ``<base>/mcp`` (the unified endpoint),
``<base>/sse`` (the same endpoint over the legacy SSE transport, ``/messages/``
included), ``<base>/mcp/servers/<name>`` (one server) and ``<base>/api/v1`` (REST).
An OAuth access token is bound to exactly one: a token issued for one server's
endpoint does not open another's. ``/mcp`` and ``/sse`` are one endpoint under two
names, so a token for either opens both; each name has metadata of its own, because
a client must find there exactly the URL it connects to (RFC 9728 §3.3).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from gateway.auth.principal import Principal
from gateway.errors import Unauthenticated

WELL_KNOWN_RESOURCE = "/.well-known/oauth-protected-resource"
WELL_KNOWN_SERVER = "/.well-known/oauth-authorization-server"
UNIFIED = "/mcp"
LEGACY_SSE = "/sse"
REST = "/api/v1"

# What an MCP client asks for when it names no scope (and what a 401 from /mcp
# suggests): everything /mcp does, still bounded by the user's role.
MCP_SCOPES = (
    "tools:read",
    "tools:execute",
    "skills:read",
    "sandboxes:read",
    "sandboxes:write",
    "sandboxes:execute",
)


def request_base(scope: Mapping[str, object], public_url: str | None) -> str:
    """``scheme://host[:port]`` of the gateway as this request reached it, unless the
    configured public URL says otherwise. (/mcp checks the Host header against
    MCPGW_ALLOWED_HOSTS before anything else, so a forged Host gets no metadata.)"""
    if public_url:
        return public_url
    scheme = str(scope.get("scheme") or "http")
    host = ""
    headers = scope.get("headers")
    if isinstance(headers, list):
        for name, value in headers:
            if name == b"host":
                host = value.decode("latin-1")
                break
    if not host:
        server = scope.get("server")
        if isinstance(server, tuple) and len(server) == 2:
            host = f"{server[0]}:{server[1]}"
    return f"{scheme}://{host.lower()}"


def resource_path(path: str) -> str | None:
    """The protected resource a request path belongs to (its path part), or None."""
    if path == UNIFIED:
        return UNIFIED
    if path in (LEGACY_SSE, "/messages/", "/messages"):
        return LEGACY_SSE
    if path.startswith("/mcp/servers/") or path.startswith("/mcp/bundles/"):
        name = path.split("/", 3)[3]
        return path if name and "/" not in name else None
    if path == REST or path.startswith(REST + "/"):
        return REST
    return None


def canonical_resource(resource: str, base: str) -> str | None:
    """``resource`` as one of ours in canonical form (lower-case scheme and host, no
    trailing slash or fragment), or None when it names something we do not serve."""
    parts = urlsplit(resource)
    if parts.query or parts.fragment:
        return None
    origin = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
    if origin != base:
        return None
    path = parts.path.rstrip("/") or "/"
    found = resource_path(path)
    return f"{base}{found}" if found is not None and found == path else None


def metadata_url(base: str, path: str) -> str:
    """Where the protected-resource metadata of the resource at ``path`` is served."""
    return f"{base}{WELL_KNOWN_RESOURCE}{path}"


def resource_metadata(
    base: str, path: str, authorization_servers: list[str], scopes: tuple[str, ...]
) -> dict[str, object]:
    """The RFC 9728 document for the resource at ``path``."""
    return {
        "resource": f"{base}{path}",
        "authorization_servers": authorization_servers,
        "scopes_supported": list(scopes),
        "bearer_methods_supported": ["header"],
        "resource_name": "MCP Gateway" if path == UNIFIED else f"MCP Gateway {path}",
    }


def check_audience(principal: Principal, base: str, path: str) -> None:
    """Refuse a token issued for another resource than the one at ``path`` (RFC 8707:
    a token one MCP server's endpoint received must not open another)."""
    if principal.audience is None:
        return
    expected = resource_path(path) or path
    allowed = {UNIFIED, LEGACY_SSE} if expected in (UNIFIED, LEGACY_SSE) else {expected}
    if principal.audience not in {f"{base}{p}" for p in allowed}:
        raise Unauthenticated(
            "the access token was issued for another resource", code="invalid_audience"
        )
