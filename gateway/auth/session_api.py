"""REST for signing in: ``/auth/providers`` (what the sign-in page offers; admins add,
change and remove providers) and ``/auth/session`` (the browser's session: who, and
the CSRF token its writes need)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from gateway.auth.deps import CurrentPrincipal
from gateway.auth.sessions import COOKIE, SessionService, csrf_token
from gateway.auth.sso.flow import SsoService
from gateway.auth.sso.store import public as _public
from gateway.config_identity import SsoProvider
from gateway.errors import ERROR_RESPONSES, InvalidInput, NotFound, Unauthenticated
from gateway.provided import provided

router = APIRouter(prefix="/auth", tags=["identity"])


class ProviderOut(BaseModel):
    name: str
    label: str
    login_url: str


class ProviderDetail(BaseModel):
    source: str  # "settings" (MCPGW_SSO_PROVIDERS, read-only) or "database"
    config: dict[str, Any]  # the provider without its client secret (has_client_secret)


class SessionOut(BaseModel):
    user_id: str
    email: str
    name: str
    role: str
    csrf_token: str


def _sessions(request: Request) -> SessionService:
    return provided(request, "sessions", SessionService)


def _sso(request: Request) -> SsoService:
    return provided(request, "sso", SsoService)


SessionsDep = Annotated[SessionService, Depends(_sessions)]
SsoDep = Annotated[SsoService, Depends(_sso)]


@router.get("/providers", response_model=list[ProviderOut], summary="Sign-in providers")
async def providers(sso: SsoDep) -> list[ProviderOut]:
    """The identity providers people can sign in with (an API key always works too)."""
    return [
        ProviderOut(name=n, label=label, login_url=f"/auth/login/{n}")
        for n, label in await sso.listed()
    ]


@router.get(
    "/providers/{name}",
    response_model=ProviderDetail,
    responses=ERROR_RESPONSES,
    summary="A sign-in provider's configuration",
)
async def provider_detail(name: str, sso: SsoDep, principal: CurrentPrincipal) -> ProviderDetail:
    principal.require("settings:read")
    found = next((s for s in await sso.store.all() if s.provider.name == name), None)
    if found is None:
        raise NotFound(f"no sign-in provider named {name!r}")
    return ProviderDetail(source=found.source, config=_public(found.provider))


@router.post(
    "/providers",
    status_code=201,
    response_model=ProviderDetail,
    responses=ERROR_RESPONSES,
    summary="Add a sign-in provider",
)
async def add_provider(
    body: SsoProvider, sso: SsoDep, principal: CurrentPrincipal
) -> ProviderDetail:
    """Store a provider (its client secret sealed); it is offered at once."""
    await sso.store.create(principal, body)
    return ProviderDetail(source="database", config=_public(body))


@router.put(
    "/providers/{name}",
    response_model=ProviderDetail,
    responses=ERROR_RESPONSES,
    summary="Change a sign-in provider",
)
async def change_provider(
    name: str, body: SsoProvider, sso: SsoDep, principal: CurrentPrincipal
) -> ProviderDetail:
    """Replace a stored provider's configuration (without ``client_secret``, the
    stored secret stays)."""
    if body.name != name:
        raise InvalidInput(f"the body names provider {body.name!r}, the path {name!r}")
    await sso.store.replace(principal, body)
    return ProviderDetail(source="database", config=_public(body))


@router.delete(
    "/providers/{name}", status_code=204, responses=ERROR_RESPONSES, summary="Remove a provider"
)
async def remove_provider(name: str, sso: SsoDep, principal: CurrentPrincipal) -> Response:
    await sso.store.delete(principal, name)
    return Response(status_code=204)


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
