"""TLS settings of one remote backend: a private CA to trust (``config.tls_ca``, PEM)
and a client certificate for backends that require mutual TLS (the server's secrets
``TLS_CLIENT_CERT`` and ``TLS_CLIENT_KEY``, PEM, sealed like every secret).

Python's ``ssl`` reads a certificate chain only from a file; the key must never be
written to disk in the clear, so it goes through an anonymous in-memory file
(``memfd_create``) that exists only while the chain is loaded.
"""

from __future__ import annotations

import os
import ssl

from gateway.servers.runtimes.base import ServerSpec

CLIENT_CERT = "TLS_CLIENT_CERT"
CLIENT_KEY = "TLS_CLIENT_KEY"


def backend_ssl_context(spec: ServerSpec) -> ssl.SSLContext | None:
    """The backend's own TLS context, or None (system trust store, no certificate)."""
    ca = spec.config.get("tls_ca")
    cert, key = spec.secret_env.get(CLIENT_CERT), spec.secret_env.get(CLIENT_KEY)
    if not ca and not cert:
        return None
    return tls_context(ca, cert, key)


def tls_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """A verifying client context trusting ``ca`` (else the system store), presenting
    ``cert``/``key`` when given. ValueError saying which part is wrong."""
    try:
        context = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(f"tls_ca is not a PEM certificate: {exc}") from exc
    if cert or key:
        if not (cert and key):
            raise ValueError(f"{CLIENT_CERT} and {CLIENT_KEY} go together")
        _load_chain(context, cert, key)
    return context


def _load_chain(context: ssl.SSLContext, cert: str, key: str) -> None:
    fd = os.memfd_create("mcpgw-client-cert", os.MFD_CLOEXEC)
    try:
        os.write(fd, (cert.strip() + "\n" + key.strip() + "\n").encode())
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    except (ssl.SSLError, OSError) as exc:
        # The reason, never the key: ssl's messages name the failing step only.
        raise ValueError(
            f"{CLIENT_CERT}/{CLIENT_KEY} could not be loaded: {exc.__class__.__name__}"
        ) from exc
    finally:
        os.close(fd)
