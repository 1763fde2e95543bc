"""REST for signing in: ``/auth/providers`` (what the sign-in page offers) and
``/auth/session`` (the browser's session: who, and the CSRF token its writes need)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from gateway.auth.deps import CurrentPrincipal
from gateway.auth.sessions import COOKIE, SessionService, csrf_token
from gateway.errors import ERROR_RESPONSES, Unauthenticated
from gateway.provided import provided

router = APIRouter(prefix="/auth", tags=["identity"])


class ProviderOut(BaseModel):
    name: str
    label: str
    login_url: str


class SessionOut(BaseModel):
    user_id: str
    email: str
    name: str
    role: str
    csrf_token: str


def _sessions(request: Request) -> SessionService:
    return provided(request, "sessions", SessionService)


SessionsDep = Annotated[SessionService, Depends(_sessions)]


@router.get("/providers", response_model=list[ProviderOut], summary="Sign-in providers")
async def providers(request: Request) -> list[ProviderOut]:
    """The identity providers people can sign in with (an API key always works too)."""
    found: list[tuple[str, str]] = getattr(request.app.state, "sign_in_providers", [])
    return [ProviderOut(name=n, label=label, login_url=f"/auth/login/{n}") for n, label in found]


@router.get(
    "/session",
    response_model=SessionOut,
    responses=ERROR_RESPONSES,
    summary="This browser's session",
)
async def session(request: Request, principal: CurrentPrincipal) -> SessionOut:
    cookie = request.cookies.get(COOKIE)
    if principal.auth_method != "session" or not cookie:
        raise Unauthenticated("no browser session: this is for signed-in browsers")
    return SessionOut(
        user_id=principal.user_id,
        email=principal.email,
        name=principal.name,
        role=principal.role,
        csrf_token=csrf_token(cookie),
    )


@router.delete("/session", status_code=204, responses=ERROR_RESPONSES, summary="Sign out")
async def sign_out(
    request: Request, principal: CurrentPrincipal, sessions: SessionsDep
) -> Response:
    """End this browser's session (the write needs its X-CSRF-Token)."""
    cookie = request.cookies.get(COOKIE)
    if principal.auth_method != "session" or not cookie:
        raise Unauthenticated("no browser session to end")
    await sessions.end(cookie, principal)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/")
    return response
