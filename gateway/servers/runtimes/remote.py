"""``remote`` adapter: a URL speaking Streamable HTTP, falling back to legacy HTTP+SSE.

Both protocol eras are negotiated by the SDK client (``server/discover`` first,
then the ``initialize`` handshake). Custom and secret headers go on every request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from gateway.servers.runtimes.base import RuntimeContext, ServerSpec
from gateway.servers.runtimes.ssrf import check_url


@asynccontextmanager
async def streamable_http(url: str, headers: dict[str, str]) -> AsyncIterator[Any]:
    """Streamable HTTP with our headers; the HTTP client is ours, so we close it."""
    http = create_mcp_http_client(headers=headers)
    async with http, streamable_http_client(url, http_client=http) as streams:
        yield streams


class RemoteConnector:
    async def targets(self, spec: ServerSpec, ctx: RuntimeContext) -> Sequence[Any]:
        url = spec.config["url"]
        await check_url(url, ctx.allow_private_urls)
        headers = {**spec.config.get("headers", {}), **spec.secret_headers}
        transport = spec.config.get("transport", "auto")
        if transport == "streamable_http":
            return [streamable_http(url, headers)]
        if transport == "sse":
            return [sse_client(url, headers=headers)]
        candidates = [streamable_http(url, headers), sse_client(url, headers=headers)]
        if urlsplit(url).path.rstrip("/").endswith("/sse"):
            candidates.reverse()  # an /sse URL is almost certainly the legacy transport
        return candidates
