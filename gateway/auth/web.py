"""Signing in with a browser: the sign-in page (API key; identity providers come
through /auth/login/{provider}), the OAuth consent page and sign-out.

Everything here answers HTML or redirects; the JSON view of the session is
``/api/v1/auth/session`` (auth/api.py). Forms posted with the session cookie carry
its CSRF token, and cross-site posts are refused before anything else.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from starlette.responses import RedirectResponse, Response

from gateway.auth.authenticator import Authenticator
from gateway.auth.deps import gateway_base, refuse_cross_site
from gateway.auth.oauth.routes import CONSENT
from gateway.auth.oauth.service import OAuthService
from gateway.auth.pages import HEADERS, consent_page, message_page, sign_in_page
from gateway.auth.principal import Principal
from gateway.auth.sessions import COOKIE, SessionService, csrf_matches, csrf_token
from gateway.auth.sso.flow import STATE_TTL, SsoService
from gateway.auth.sso.mapping import SignInRefused
from gateway.errors import Forbidden, NotFound, Unauthenticated
from gateway.provided import provided

router = APIRouter(include_in_schema=False)


def _authenticator(request: Request) -> Authenticator:
    return provided(request, "authenticator", Authenticator)


def _sessions(request: Request) -> SessionService:
    return provided(request, "sessions", SessionService)


def _oauth(request: Request) -> OAuthService:
    return provided(request, "oauth", OAuthService)


def _sso(request: Request) -> SsoService:
    return provided(request, "sso", SsoService)


AuthenticatorDep = Annotated[Authenticator, Depends(_authenticator)]
SessionsDep = Annotated[SessionService, Depends(_sessions)]
OAuthDep = Annotated[OAuthService, Depends(_oauth)]
SsoDep = Annotated[SsoService, Depends(_sso)]
LOGIN_COOKIE = "mcpgw_login"  # binds a sign-in at a provider to the browser that began it


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this gateway, never another site (an
    open redirect would hand the session's first page to an attacker)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(c in value for c in "\r\n\t\\") or len(value) > 2048:
        return "/"
    return value


async def _providers(request: Request) -> list[tuple[str, str]]:
    return await _sso(request).listed()


async def signed_in(request: Request, authenticator: Authenticator) -> tuple[Principal, str] | None:
    """The principal of the request's session cookie and the cookie, or None."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    try:
        return await authenticator.authenticate(cookie, cookie=True), cookie
    except Unauthenticated:
        return None


def start_session_response(request: Request, token: str, ttl: int, next_path: str) -> Response:
    """Redirect to ``next_path`` with the session cookie set (Secure over https)."""
    response = RedirectResponse(safe_next(next_path), status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=ttl,
        httponly=True,
        secure=gateway_base(request).startswith("https://"),
        samesite="lax",  # sent on the top-level GET back from a provider or client
        path="/",
    )
    return response


@router.get("/auth/signin")
async def sign_in_form(request: Request, next: str = "/") -> Response:
    return sign_in_page(safe_next(next), await _providers(request))


@router.post("/auth/signin")
async def sign_in_with_key(
    request: Request,
    authenticator: AuthenticatorDep,
    sessions: SessionsDep,
    api_key: Annotated[str, Form(max_length=4096)],
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    refuse_cross_site(request)
    try:
        principal = await authenticator.authenticate(api_key.strip())
        if principal.auth_method != "api_key":
            raise Unauthenticated("sign in with an API key here", code="invalid_api_key")
    except Unauthenticated as exc:
        return sign_in_page(safe_next(next), await _providers(request), error=exc.message)
    token = await sessions.start(principal, "api_key")
    return start_session_response(request, token, int(sessions.ttl.total_seconds()), next)


@router.get("/auth/login/{provider}")
async def sign_in_with_provider(
    request: Request, provider: str, sso: SsoDep, next: str = "/"
) -> Response:
    """Off to the identity provider, with state, nonce and PKCE."""
    try:
        url, browser = await sso.begin(provider, gateway_base(request), safe_next(next))
    except NotFound as exc:
        return message_page("Unknown sign-in provider", exc.message, 404)
    except SignInRefused as exc:
        return message_page("Sign-in unavailable", exc.message, 503)
    response = RedirectResponse(url, status_code=302, headers=HEADERS)
    response.set_cookie(
        LOGIN_COOKIE,
        browser,
        max_age=int(STATE_TTL.total_seconds()),
        httponly=True,
        secure=gateway_base(request).startswith("https://"),
        samesite="lax",
        path="/auth/callback",
    )
    return response


@router.get("/auth/callback/{provider}")
async def provider_callback(
    request: Request, provider: str, sso: SsoDep, sessions: SessionsDep
) -> Response:
    """Back from the identity provider: check everything, sign the person in."""
    try:
        principal, next_path = await sso.finish(
            provider, dict(request.query_params), request.cookies.get(LOGIN_COOKIE)
        )
    except NotFound as exc:
        return message_page("Unknown sign-in provider", exc.message, 404)
    except SignInRefused as exc:
        return message_page("Sign-in refused", exc.message, 403)
    token = await sessions.start(principal, f"oidc:{provider}")
    response = start_session_response(request, token, int(sessions.ttl.total_seconds()), next_path)
    response.delete_cookie(LOGIN_COOKIE, path="/auth/callback")
    return response


@router.get("/oauth/code")
async def show_code(code: str = "", error: str = "") -> Response:
    """Where a client without a browser of its own (``mcpgw login --no-browser``) sends
    the person: the code to paste back into it (useless without the client's PKCE
    verifier)."""
    if error or not code:
        return message_page("Sign-in not completed", error or "no code in this answer", 400)
    return message_page("Signed in", f"Paste this code into the terminal: {code}", 200)


@router.post("/auth/logout")
async def sign_out(
    request: Request,
    sessions: SessionsDep,
    authenticator: AuthenticatorDep,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    refuse_cross_site(request)
    found = await signed_in(request, authenticator)
    if found is not None:
        principal, cookie = found
        presented = csrf_token or request.headers.get("x-csrf-token")
        if not csrf_matches(cookie, presented):
            raise Forbidden("signing out needs the session's CSRF token", code="csrf_failed")
        await sessions.end(cookie, principal)
    response = RedirectResponse("/auth/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get(CONSENT)
async def consent_form(
    request: Request,
    authenticator: AuthenticatorDep,
    oauth: OAuthDep,
    request_id: Annotated[str, Query(alias="request", max_length=128)] = "",
) -> Response:
    found = await signed_in(request, authenticator)
    if found is None:
        here = f"{CONSENT}?request={quote(request_id, safe='')}"
        return RedirectResponse(f"/auth/signin?next={quote(here, safe='')}", status_code=303)
    principal, cookie = found
    try:
        pending = await oauth.pending(request_id)
    except NotFound as exc:
        return message_page("Sign-in request not found", exc.message, 404)
    return consent_page(pending, principal.email, csrf_token(cookie))


@router.post(CONSENT)
async def consent_decision(
    request: Request,
    authenticator: AuthenticatorDep,
    oauth: OAuthDep,
    request_id: Annotated[str, Form(alias="request", max_length=128)],
    decision: Annotated[str, Form(max_length=16)],
    csrf: Annotated[str, Form(alias="csrf_token", max_length=128)] = "",
) -> Response:
    refuse_cross_site(request)
    found = await signed_in(request, authenticator)
    if found is None:
        return message_page("Not signed in", "Sign in again, then retry from your app.", 401)
    principal, cookie = found
    if not csrf_matches(cookie, csrf):
        return message_page("Request refused", "The form's CSRF token is missing or wrong.", 403)
    try:
        where = await oauth.decide(request_id, principal, approve=decision == "allow")
    except NotFound as exc:
        return message_page("Sign-in request not found", exc.message, 404)
    return RedirectResponse(where, status_code=303)
