"""``remote`` adapter: a URL speaking Streamable HTTP, falling back to legacy HTTP+SSE.

Both protocol eras are negotiated by the SDK client (``server/discover`` first,
then the ``initialize`` handshake). Custom and secret headers go on every request.
The URL passes the SSRF guard on every connect, and the SDK's HTTP clients connect
only to the addresses it approved (:mod:`gateway.pinned_http`).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from gateway.pinned_http import mcp_client_factory
from gateway.servers.runtimes.abandon import abort_abandoned_posts
from gateway.servers.runtimes.backend_tls import backend_ssl_context
from gateway.servers.runtimes.base import RuntimeContext, ServerSpec
from gateway.ssrf import HostPins, check_url


class StreamableHttpTarget:
    """The SDK's Streamable HTTP transport with our headers (the HTTP client is ours, so
    we close it). It remembers the session id the backend hands out, so the fast
    path's direct POSTs join the same backend session (see ``direct.py``)."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        pins: HostPins | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.headers = headers
        # The backend's own TLS settings (client certificate, private CA), shared with
        # the fast path's channel; None: the system's trust store, no certificate.
        self.ssl_context = ssl_context
        # The guard's approved addresses, shared with the fast path's channel (None:
        # private URLs allowed, or a gateway-owned loopback backend).
        self.pins = pins
        self.session_id: str | None = None
        # The server answered 404 to our session: it forgot it (restart, idle expiry).
        # The SDK does not start a new one itself; the connection does, on seeing this.
        self.expired = False
        self._stack: AsyncExitStack | None = None

    async def __aenter__(self) -> Any:
        stack = AsyncExitStack()
        http = mcp_client_factory(self.url, self.pins, self.ssl_context)(headers=self.headers)
        http.event_hooks["response"].append(self._on_response)
        try:
            await stack.enter_async_context(http)
            connecting = streamable_http_client(self.url, http_client=http)
            streams = await stack.enter_async_context(connecting)
            abort_abandoned_posts(connecting)  # a cancel closes the request's connection
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return streams

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        self.session_id = None
        return await stack.__aexit__(exc_type, exc, tb) if stack is not None else None

    async def _on_response(self, response: Any) -> None:
        session_id = response.headers.get("mcp-session-id")
        if session_id:
            self.session_id = session_id
        elif response.status_code == 404 and response.request.headers.get("mcp-session-id"):
            self.expired = True


def streamable_http(
    url: str,
    headers: dict[str, str],
    pins: HostPins | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> StreamableHttpTarget:
    """The Streamable HTTP target for ``url`` (connecting to ``pins`` when given)."""
    return StreamableHttpTarget(url, headers, pins, ssl_context)


class RemoteConnector:
    @staticmethod
    def client_mode(spec: ServerSpec) -> str:
        """The SDK client mode for the configured era (``protocol``)."""
        protocol = spec.config.get("protocol", "auto")
        return {"2025-11-25": "legacy", "2026-07-28": "2026-07-28"}.get(protocol, "auto")

    async def targets(self, spec: ServerSpec, ctx: RuntimeContext) -> Sequence[Any]:
        url = spec.config["url"]
        # Resolved and checked on every (re)connect; the session then connects to exactly
        # these addresses (no second DNS answer: rebinding-proof).
        pins = HostPins.of(await check_url(url, ctx.allow_private_urls))
        headers = {**spec.config.get("headers", {}), **spec.secret_headers}
        transport = spec.config.get("transport", "auto")
        tls = backend_ssl_context(spec)
        factory = mcp_client_factory(url, pins, tls)
        if transport == "streamable_http":
            return [streamable_http(url, headers, pins, tls)]
        if transport == "sse":
            return [sse_client(url, headers=headers, httpx_client_factory=factory)]
        candidates = [
            streamable_http(url, headers, pins, tls),
            sse_client(url, headers=headers, httpx_client_factory=factory),
        ]
        if urlsplit(url).path.rstrip("/").endswith("/sse"):
            candidates.reverse()  # an /sse URL is almost certainly the legacy transport
        return candidates
