"""Client ID Metadata Documents (the MCP specification's 2025-11-25 way for a client
to identify itself without registering): the client id is an HTTPS URL, and the
document there says the client's name and redirect URIs. The gateway fetches it through
the SSRF guard, small and quickly, and checks it names itself."""

from __future__ import annotations

from urllib.parse import urlsplit

from mcp.shared.auth import OAuthClientInformationFull
from pydantic import ValidationError

from gateway.pinned_http import httpx_client
from gateway.ssrf import HostPins, check_url

MAX_BYTES = 10_240  # a client's name and a few URLs; anything bigger is not one
_TIMEOUT = 5.0


def is_metadata_url(client_id: str, allow_http: bool = False) -> bool:
    """Does ``client_id`` name a metadata document (an https URL with a path)?"""
    parts = urlsplit(client_id)
    schemes = ("https", "http") if allow_http else ("https",)
    return (
        parts.scheme in schemes
        and bool(parts.hostname)
        and parts.path not in ("", "/")
        and not parts.fragment
        and not parts.username
        and not parts.password
    )


async def fetch_client_document(url: str, allow_private: bool) -> OAuthClientInformationFull:
    """The client the document at ``url`` describes; ValueError saying what is wrong."""
    pin = await check_url(url, allow_private)
    async with (
        httpx_client(url, HostPins.of(pin), timeout=_TIMEOUT) as client,
        client.stream("GET", url, headers={"Accept": "application/json"}) as response,
    ):
        if response.status_code != 200:
            raise ValueError(f"the client's metadata document answered {response.status_code}")
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_BYTES:
                raise ValueError("the client's metadata document is too large")
    try:
        info = OAuthClientInformationFull.model_validate_json(body)
    except ValidationError as exc:
        raise ValueError(
            f"the client's metadata document is not valid: {exc.errors()[0]['msg']}"
        ) from exc
    if info.client_id != url:
        raise ValueError("the client's metadata document names another client_id")
    if info.client_secret or (info.token_endpoint_auth_method or "none") != "none":
        raise ValueError("a metadata-document client is public: token_endpoint_auth_method 'none'")
    if not info.redirect_uris:
        raise ValueError("the client's metadata document lists no redirect_uris")
    info.token_endpoint_auth_method = "none"  # noqa: S105 (a method's name, no secret)
    return info
