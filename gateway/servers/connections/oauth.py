"""The gateway as an OAuth client of a backend's authorization server, for one user at
a time: discovery, the authorization URL, the code exchange and refreshes.

authlib does the protocol (PKCE S256, token requests, error parsing); this module
finds the endpoints — given in the server's config, or discovered from the backend's
RFC 9728 protected-resource metadata, then the authorization server's RFC 8414 (or
OpenID) metadata — and puts every request through the SSRF guard (``check_url``, and
a transport that connects only to the addresses it approved).

Errors never carry a token: :class:`GrantRefused` has the provider's error code and
description, :class:`ProviderBusy` the ``Retry-After`` it asked for.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from gateway.db import utcnow
from gateway.pinned_http import PinnedTransport2, httpx_client
from gateway.ssrf import HostPins, check_url, proxied

log = logging.getLogger("gateway.connections")

_TIMEOUT = 10.0
_DISCOVERY_TTL = 3600.0
_BUSY = frozenset({429, 503})


class ConnectFailed(Exception):
    """The authorization server cannot be used (unreachable, bad metadata); the message
    is safe to show."""


class GrantRefused(Exception):
    """The token endpoint refused the grant (``invalid_grant``: revoked or expired)."""

    def __init__(self, error: str, description: str | None = None) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error


class ProviderBusy(Exception):
    """The token endpoint asked us to come back later (429/503, ``Retry-After``)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"the authorization server is busy; retry in {retry_after:g}s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Endpoints:
    """Where a user authorizes and where tokens come from."""

    authorize: str
    token: str
    issuer: str | None = None


@dataclass(frozen=True)
class Tokens:
    """A token response, reduced to what the vault keeps."""

    access_token: str
    refresh_token: str | None
    expires_at: datetime | None

    @classmethod
    def of(cls, token: dict[str, Any], previous_refresh: str | None = None) -> Tokens:
        access = token.get("access_token")
        if not isinstance(access, str) or not access:
            raise ConnectFailed("the token endpoint answered no access token")
        expires_in = token.get("expires_in")
        expires = utcnow() + timedelta(seconds=float(expires_in)) if expires_in else None
        refresh = token.get("refresh_token") or previous_refresh
        return cls(access, str(refresh) if refresh else None, expires)

    def sealed_form(self) -> dict[str, str]:
        """What goes into the SecretBox."""
        found = {"access_token": self.access_token}
        if self.refresh_token:
            found["refresh_token"] = self.refresh_token
        return found


def _retry_after(value: str | None) -> float:
    try:
        return max(1.0, min(float(value or 60), 3600.0))
    except ValueError:  # an HTTP date: come back in a minute
        return 60.0


def _busy_hook(response: Any) -> Any:
    """authlib compliance hook: a 429/503 from the token endpoint is a pause, not an
    answer (authlib would try to read an error out of its body)."""
    if response.status_code in _BUSY:
        raise ProviderBusy(_retry_after(response.headers.get("retry-after")))
    return response


def well_known(url: str, suffix: str) -> list[str]:
    """RFC 8414/9728 locations of ``suffix`` for ``url``: inserted before the path,
    then (for a path) at the root, then (OpenID) appended to the path."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    found = [urlunsplit((parts.scheme, parts.netloc, f"/.well-known/{suffix}{path}", "", ""))]
    if path:
        found.append(urlunsplit((parts.scheme, parts.netloc, f"/.well-known/{suffix}", "", "")))
    return found


class OAuthApp:
    """The OAuth client side of the vault (one per process; endpoints cached)."""

    def __init__(self, *, allow_private_urls: bool) -> None:
        self.allow_private_urls = allow_private_urls
        self._endpoints: dict[str, tuple[Endpoints, float]] = {}

    async def endpoints(self, server_url: str, config: dict[str, Any]) -> Endpoints:
        """The server's endpoints: from its config, else discovered (cached an hour)."""
        if config.get("authorization_endpoint") and config.get("token_endpoint"):
            return Endpoints(
                config["authorization_endpoint"], config["token_endpoint"], config.get("issuer")
            )
        key = f"{server_url} {config.get('issuer') or ''}"
        cached = self._endpoints.get(key)
        if cached is not None and time.monotonic() - cached[1] < _DISCOVERY_TTL:
            return cached[0]
        try:
            issuer = config.get("issuer") or await self._issuer_of(server_url)
            found = await self._metadata(issuer)
        except ConnectFailed:
            raise
        except Exception as exc:
            log.warning("OAuth discovery for %s failed: %s", server_url, exc)
            raise ConnectFailed(
                "the backend's authorization server cannot be discovered right now; try "
                "again later, or give authorization_endpoint and token_endpoint"
            ) from exc
        self._endpoints[key] = (found, time.monotonic())
        return found

    async def _issuer_of(self, server_url: str) -> str:
        """The first authorization server the backend's RFC 9728 metadata names."""
        for url in well_known(server_url, "oauth-protected-resource"):
            doc = await self._get_json(url)
            if isinstance(doc, dict) and doc.get("authorization_servers"):
                return str(doc["authorization_servers"][0])
        raise ConnectFailed(
            "the backend publishes no protected-resource metadata (RFC 9728): give "
            "credentials.issuer, or both endpoints"
        )

    async def _metadata(self, issuer: str) -> Endpoints:
        urls = [
            *well_known(issuer, "oauth-authorization-server"),
            issuer.rstrip("/") + "/.well-known/openid-configuration",
        ]
        for url in dict.fromkeys(urls):
            doc = await self._get_json(url)
            if not isinstance(doc, dict) or "token_endpoint" not in doc:
                continue
            if str(doc.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
                raise ConnectFailed("the authorization server's metadata names another issuer")
            return Endpoints(str(doc["authorization_endpoint"]), str(doc["token_endpoint"]), issuer)
        raise ConnectFailed(f"no OAuth metadata (RFC 8414 or OpenID) at {issuer}")

    async def _get_json(self, url: str) -> Any:
        pins = HostPins.of(await check_url(url, self.allow_private_urls))
        async with httpx_client(url, pins, timeout=_TIMEOUT) as client:
            response = await client.get(url, headers={"Accept": "application/json"})
        if response.status_code != 200:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    async def client(
        self, url: str, config: dict[str, Any], secret: str | None, redirect_uri: str | None
    ) -> AsyncOAuth2Client:
        """authlib's client for requests to ``url``, pinned to what the guard approved."""
        pins = HostPins.of(await check_url(url, self.allow_private_urls))
        transport = PinnedTransport2(pins) if pins is not None and not proxied(url) else None
        client = AsyncOAuth2Client(
            transport=transport,
            client_id=config["client_id"],
            client_secret=secret,
            token_endpoint_auth_method="client_secret_post" if secret else "none",
            scope=" ".join(config.get("scopes") or []) or None,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=_TIMEOUT,
        )
        client.register_compliance_hook("access_token_response", _busy_hook)
        client.register_compliance_hook("refresh_token_response", _busy_hook)
        return client

    async def authorization_url(
        self,
        endpoints: Endpoints,
        config: dict[str, Any],
        redirect_uri: str,
        state: str,
        verifier: str,
        resource: str,
    ) -> str:
        """Where the user's browser goes to authorize the gateway (PKCE S256, RFC 8707)."""
        async with await self.client(endpoints.authorize, config, None, redirect_uri) as client:
            url, _ = client.create_authorization_url(
                endpoints.authorize, state=state, code_verifier=verifier, resource=resource
            )
        return str(url)

    async def exchange(
        self,
        endpoints: Endpoints,
        config: dict[str, Any],
        secret: str | None,
        redirect_uri: str,
        code: str,
        verifier: str,
        resource: str,
    ) -> Tokens:
        """The authorization code for tokens."""
        async with await self.client(endpoints.token, config, secret, redirect_uri) as client:
            try:
                token = await client.fetch_token(
                    endpoints.token, code=code, code_verifier=verifier, resource=resource
                )
            except OAuthError as exc:
                raise GrantRefused(str(exc.error), exc.description) from None
        return Tokens.of(dict(token))

    async def refresh(
        self,
        endpoints: Endpoints,
        config: dict[str, Any],
        secret: str | None,
        refresh_token: str,
        resource: str,
    ) -> Tokens:
        """New tokens for a refresh token; :class:`GrantRefused` or :class:`ProviderBusy`."""
        async with await self.client(endpoints.token, config, secret, None) as client:
            try:
                token = await client.refresh_token(
                    endpoints.token, refresh_token=refresh_token, resource=resource
                )
            except OAuthError as exc:
                raise GrantRefused(str(exc.error), exc.description) from None
        return Tokens.of(dict(token), refresh_token)
