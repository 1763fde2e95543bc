"""TLS terminated by the gateway itself (``MCPGW_TLS_*``), with optional client
certificates that authenticate agents (mutual TLS).

uvicorn verifies the client certificate against ``MCPGW_TLS_CLIENT_CA_FILE`` during
the handshake but does not hand it to the application; the protocol classes here put
the verified certificate into each request's scope, as the ASGI TLS extension does
(``scope["extensions"]["tls"]["client_cert"]``, here the parsed form Python's ``ssl``
gives), and authentication maps its email address to a user (auth/authenticator.py).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.config import Settings
from gateway.http_protocol import GatewayHttpProtocol

_REQS = {"optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def uvicorn_http_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.Config arguments for serving HTTP: the protocol (gateway/http_protocol.py's,
    with the client certificate passed on under mutual TLS) and the configured TLS."""
    if settings.tls_cert_file is None:
        return {"http": GatewayHttpProtocol}
    options: dict[str, Any] = {
        "ssl_certfile": str(settings.tls_cert_file),
        "ssl_keyfile": str(settings.tls_key_file),
        "http": GatewayHttpProtocol,
    }
    if settings.tls_client_auth != "off":
        options.update(
            ssl_ca_certs=str(settings.tls_client_ca_file),
            ssl_cert_reqs=_REQS[settings.tls_client_auth],
            http=CertHttpToolsProtocol,
        )
    return options


class _WithCertificate:
    """The app, with this connection's verified client certificate in every scope."""

    def __init__(self, app: ASGIApp, certificate: dict[str, Any]) -> None:
        self.app, self.certificate = app, certificate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extensions = dict(scope.get("extensions") or {})
        extensions["tls"] = {"client_cert": self.certificate}
        scope["extensions"] = extensions
        await self.app(scope, receive, send)


def _peer(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    found = transport.get_extra_info("ssl_object")
    certificate = found.getpeercert() if isinstance(found, ssl.SSLObject) else None
    return certificate or None  # {} when the client sent none (CERT_OPTIONAL)


class CertHttpToolsProtocol(GatewayHttpProtocol):
    """The gateway's HTTP protocol, passing the connection's client certificate on."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        certificate = _peer(transport)
        if certificate is not None:
            self.app = _WithCertificate(self.app, certificate)
