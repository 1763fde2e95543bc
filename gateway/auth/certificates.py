"""Agents authenticated by a client certificate (mutual TLS, gateway/tls.py): the
certificate's email address names the user."""

from __future__ import annotations

from starlette.types import Scope


def certificate_email(scope: Scope) -> str | None:
    """The email address of the request's verified client certificate (its
    subjectAltName ``email``, else the subject's emailAddress), or None."""
    tls = (scope.get("extensions") or {}).get("tls")
    certificate = tls.get("client_cert") if isinstance(tls, dict) else None
    if not isinstance(certificate, dict):
        return None
    for kind, value in certificate.get("subjectAltName", ()):
        if kind == "email" and "@" in value:
            return str(value).lower()
    for rdn in certificate.get("subject", ()):
        for key, value in rdn:
            if key == "emailAddress" and "@" in value:
                return str(value).lower()
    return None
