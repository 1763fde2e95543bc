"""A direct route to a Streamable HTTP backend for the `tools/call` fast path.

The SDK session of a :class:`~gateway.servers.runtimes.connection.McpConnection`
does the handshake (or `server/discover`), the GET stream and reconnects; a
:class:`DirectRoute` reuses what it negotiated (protocol version, session id) to
POST `tools/call` requests over a lean keep-alive pool, and passes the backend's
JSON-RPC messages through nearly untouched. A call in flight on the route counts in
its session's :class:`~gateway.servers.runtimes.relay.Callers`, so what the backend asks
on the session's own stream reaches that call's agent.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from mcp.shared.inbound import encode_header_value
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.observability.masking import SecretMask
from gateway.servers.runtimes.base import Health
from gateway.servers.runtimes.http_channel import HttpChannel, encode_headers
from gateway.servers.runtimes.limiter import Limiter
from gateway.servers.runtimes.relay import Callers
from gateway.servers.runtimes.remote import StreamableHttpTarget
from gateway.ssrf import proxied

_IDS = itertools.count(1)


def next_id() -> str:
    """A backend request id no agent chose: calls from many agents share one session."""
    return f"mcpgw-{next(_IDS)}"


@dataclass
class DirectRoute:
    """What a direct POST to one backend needs; built when its SDK session connects."""

    server: str
    channel: HttpChannel
    target: StreamableHttpTarget
    protocol_version: str
    secrets: SecretMask  # masked in everything the backend sends back
    semaphore: Limiter
    health: Health
    # The SDK session's callers: what it is asked outside a call goes to one of them.
    callers: Callers = field(default_factory=Callers)
    _encoded: dict[tuple[str, str | None, str | None], bytes] = field(
        init=False, default_factory=dict, repr=False
    )
    # The backend's era, read several times per call: worked out once.
    modern: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.modern = self.protocol_version in MODERN_PROTOCOL_VERSIONS

    def headers(self, method: str, name: str | None = None) -> dict[str, str]:
        headers = {"MCP-Protocol-Version": self.protocol_version}
        if self.modern:
            headers["Mcp-Method"] = method
            if name is not None:
                headers["Mcp-Name"] = encode_header_value(name)
        elif self.target.session_id:
            headers["Mcp-Session-Id"] = self.target.session_id
        return headers

    def encoded_headers(self, method: str, name: str | None = None) -> bytes:
        """:meth:`headers`, encoded for the channel; remembered, as they repeat per tool."""
        key = (method, name, self.target.session_id)
        block = self._encoded.get(key)
        if block is None:
            if len(self._encoded) >= 4096:
                self._encoded.clear()
            block = self._encoded[key] = encode_headers(self.headers(method, name))
        return block

    @classmethod
    def build(
        cls,
        server: str,
        target: StreamableHttpTarget,
        protocol_version: str,
        secrets: SecretMask,
        semaphore: Limiter,
        health: Health,
        callers: Callers | None = None,
    ) -> DirectRoute | None:
        """A route, unless the backend is reached through a proxy (then the SDK's httpx
        client, which honours proxy settings, carries every call)."""
        if proxied(target.url):
            return None
        base = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "User-Agent": "mcp-gateway",
            **target.headers,
        }
        return cls(
            server=server,
            # The addresses the SSRF guard approved for this session (None: allowed private).
            channel=HttpChannel(target.url, base, pins=target.pins, ssl_context=target.ssl_context),
            target=target,
            protocol_version=protocol_version,
            secrets=secrets,
            semaphore=semaphore,
            health=health,
            callers=callers if callers is not None else Callers(),
        )
