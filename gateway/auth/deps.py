"""FastAPI dependencies: the caller's principal and permission checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from gateway.auth.authenticator import Authenticator
from gateway.auth.bearer import bearer_token
from gateway.auth.certificates import certificate_email
from gateway.auth.oauth.resources import check_audience, request_base
from gateway.auth.principal import Principal
from gateway.auth.sessions import COOKIE, CSRF_HEADER, csrf_matches
from gateway.errors import Forbidden
from gateway.provided import provided

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def current_principal(request: Request) -> Principal:
    """Authenticate ``Authorization: Bearer <token>``, else the sign-in cookie (whose
    writes need the CSRF token), or answer 401."""
    authenticator = provided(request, "authenticator", Authenticator)
    header = request.headers.get("authorization")
    cookie = request.cookies.get(COOKIE) if not header else None
    if cookie:
        principal = await authenticator.authenticate(cookie, cookie=True)
        if request.method not in _SAFE_METHODS:
            refuse_cross_site(request)
            if not csrf_matches(cookie, request.headers.get(CSRF_HEADER)):
                raise Forbidden(
                    "a signed-in browser's write needs the X-CSRF-Token header "
                    "(GET /api/v1/auth/session gives it)",
                    code="csrf_failed",
                )
    elif not header and (email := certificate_email(request.scope)) is not None:
        principal = await authenticator.authenticate_certificate(email)
    else:
        principal = await authenticator.authenticate(bearer_token(header))
        if principal.audience is not None:
            check_audience(principal, gateway_base(request), request.url.path)
    request.state.user_id = principal.user_id
    request.state.principal = principal  # for the audit row of a refusal (errors.py)
    return principal


def refuse_cross_site(request: Request) -> None:
    """Refuse a cookie-carrying write sent by another site's page (the browser says so
    in ``Sec-Fetch-Site``, or in an ``Origin`` that is not ours)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise Forbidden("cross-site request refused", code="csrf_failed")
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() != gateway_base(request):
        raise Forbidden("cross-site request refused", code="csrf_failed")


def gateway_base(request: Request) -> str:
    """The gateway's public ``scheme://host[:port]`` (MCPGW_PUBLIC_URL, else this
    request's)."""
    return request_base(request.scope, getattr(request.app.state, "public_url", None))


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(permission: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that passes the principal through if it holds ``permission``."""

    async def check(principal: CurrentPrincipal) -> Principal:
        principal.require(permission)
        return principal

    return check
