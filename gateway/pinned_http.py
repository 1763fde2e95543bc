"""httpx clients that connect only to the addresses the SSRF guard approved.

httpx resolves a URL's host itself when it opens a connection, which would let a
name answer the guard with a public address and the connect with a private one (DNS
rebinding). The clients built here keep the URL as it is (so the Host header, TLS
SNI and certificate verification still use the hostname) and swap the *network
backend* under httpx's connection pool: its ``connect_tcp(host, port)`` connects to
``host``'s pinned addresses from :class:`~gateway.ssrf.HostPins`, and vets a host
not pinned yet before connecting. httpx offers no constructor argument for a
network backend, so the transport replaces its connection pool (``_pool``, the one
private attribute touched; ``tests/unit/test_pinned_http.py`` fails if that stops
working, as the name it connects to is not resolvable there).

Two flavours: ``httpx2`` (what the MCP SDK's clients use) and ``httpx`` (the skills
catalog client). When an environment proxy would carry the request, the proxy
connects, not the gateway; the plain client is used so proxy settings keep working
(the guard's check still ran).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpcore2
import httpx
import httpx2
from mcp.shared._httpx_utils import (
    MCP_DEFAULT_SSE_READ_TIMEOUT,
    MCP_DEFAULT_TIMEOUT,
    McpHttpClientFactory,
    create_mcp_http_client,
)

from gateway.ssrf import HostPins, connect_pinned, proxied

# httpx's own defaults (DEFAULT_LIMITS), restated: the pool is built here.
_MAX_CONNECTIONS = 100
_MAX_KEEPALIVE = 20
_KEEPALIVE_EXPIRY = 5.0


class PinnedBackend2(httpcore2.AsyncNetworkBackend):
    """An httpcore2 network backend whose TCP connects go to pinned addresses."""

    def __init__(self, pins: HostPins, inner: httpcore2.AsyncNetworkBackend | None = None):
        self.pins = pins
        self.inner = inner or httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        async def connect(address: str) -> httpcore2.AsyncNetworkStream:
            return await self.inner.connect_tcp(
                address, port, timeout, local_address, socket_options
            )

        return await connect_pinned(
            self.pins,
            host,
            connect,
            (httpcore2.ConnectError, httpcore2.ConnectTimeout),
            httpcore2.ConnectError,
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("unix sockets are not pinned URLs")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class PinnedBackend1(httpcore.AsyncNetworkBackend):
    """The same for httpcore 1 (``httpx``)."""

    def __init__(self, pins: HostPins, inner: httpcore.AsyncNetworkBackend | None = None):
        self.pins = pins
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        async def connect(address: str) -> httpcore.AsyncNetworkStream:
            return await self.inner.connect_tcp(
                address, port, timeout, local_address, socket_options
            )

        return await connect_pinned(
            self.pins,
            host,
            connect,
            (httpcore.ConnectError, httpcore.ConnectTimeout),
            httpcore.ConnectError,
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not pinned URLs")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class PinnedTransport2(httpx2.AsyncHTTPTransport):
    """``httpx2.AsyncHTTPTransport`` (default TLS verification, trust store from the
    environment) over a :class:`PinnedBackend2`."""

    def __init__(self, pins: HostPins, *, ssl_context: ssl.SSLContext | None = None) -> None:
        context = ssl_context or httpx2.create_ssl_context()
        super().__init__(verify=context)  # (its own pool is replaced; one TLS context)
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=context,
            max_connections=_MAX_CONNECTIONS,
            max_keepalive_connections=_MAX_KEEPALIVE,
            keepalive_expiry=_KEEPALIVE_EXPIRY,
            network_backend=PinnedBackend2(pins),
        )


class PinnedTransport1(httpx.AsyncHTTPTransport):
    """The same for ``httpx``."""

    def __init__(self, pins: HostPins, *, ssl_context: ssl.SSLContext | None = None) -> None:
        context = ssl_context or httpx.create_ssl_context()
        super().__init__(verify=context)  # (its own pool is replaced; one TLS context)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=_MAX_CONNECTIONS,
            max_keepalive_connections=_MAX_KEEPALIVE,
            keepalive_expiry=_KEEPALIVE_EXPIRY,
            network_backend=PinnedBackend1(pins),
        )


def mcp_client_factory(
    url: str, pins: HostPins | None, ssl_context: ssl.SSLContext | None = None
) -> McpHttpClientFactory:
    """An SDK ``httpx_client_factory`` whose clients connect to ``url``'s pinned addresses
    (the SDK's own factory when there is nothing to pin or a proxy carries the URL), with
    ``ssl_context`` when the backend needs its own (a client certificate, a private CA)."""
    unpinned = pins is None or proxied(url)
    if unpinned and ssl_context is None:
        return create_mcp_http_client

    def factory(
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        # create_mcp_http_client's settings, with the pinned transport.
        if timeout is None:
            timeout = httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT)
        kwargs: dict[str, Any] = {"timeout": timeout}
        if unpinned:
            kwargs["verify"] = ssl_context
        else:
            assert pins is not None
            kwargs["transport"] = PinnedTransport2(pins, ssl_context=ssl_context)
        if headers is not None:
            kwargs["headers"] = headers
        if auth is not None:
            kwargs["auth"] = auth
        return httpx2.AsyncClient(**kwargs)

    return factory


def httpx_client(url: str, pins: HostPins | None, **kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for ``url`` over the pinned transport (plain without pins
    or behind an environment proxy); ``kwargs`` go to the client."""
    if pins is None or proxied(url):
        return httpx.AsyncClient(**kwargs)
    return httpx.AsyncClient(transport=PinnedTransport1(pins), **kwargs)


class ResponseTooLarge(ValueError):
    """A fetched body is larger than the caller allows."""


_REDIRECTS = 5


async def fetch_limited(
    url: str,
    *,
    allow_private: bool,
    max_bytes: int,
    accept: str = "*/*",
    timeout: float = 30.0,
) -> tuple[bytes, str, str]:
    """GET ``url`` through the SSRF guard (each redirect hop checked again): the body,
    its content type and the final URL. :class:`~gateway.backend_errors.BackendUnavailable`
    when the guard refuses a host or it cannot be reached; ValueError for an error
    status or too many redirects; :class:`ResponseTooLarge` past ``max_bytes`` (read no
    further)."""
    from urllib.parse import urljoin

    from gateway.ssrf import check_url

    for _ in range(_REDIRECTS + 1):
        if not url.startswith(("http://", "https://")):
            raise ValueError("only http(s) URLs can be fetched")
        pin = await check_url(url, allow_private)
        async with (
            httpx_client(url, HostPins.of(pin), timeout=timeout) as client,
            client.stream("GET", url, headers={"Accept": accept}) as response,
        ):
            if response.is_redirect and "location" in response.headers:
                url = urljoin(url, response.headers["location"])
                continue
            if response.status_code != 200:
                raise ValueError(f"{url} answered HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise ResponseTooLarge(f"{url} is larger than {max_bytes} bytes")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise ResponseTooLarge(f"{url} is larger than {max_bytes} bytes")
            return bytes(body), response.headers.get("content-type", ""), url
    raise ValueError(f"more than {_REDIRECTS} redirects")
