"""REST for the token vault (``/api/v1/connections``) and its browser routes (the OAuth
callback, and a start page for signed-in browsers). HTTP in and out only."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from starlette.responses import RedirectResponse

from gateway.auth.authenticator import Authenticator
from gateway.auth.deps import CurrentPrincipal, gateway_base
from gateway.auth.pages import HEADERS, message_page
from gateway.auth.web import safe_next, signed_in
from gateway.errors import ERROR_RESPONSES, AppError
from gateway.provided import provided
from gateway.servers.connections.schemas import ConnectionOut, ConnectionStart, ConnectionStarted
from gateway.servers.connections.service import (
    BROWSER_START,
    CALLBACK,
    ConnectionService,
    ConnectRefused,
)

router = APIRouter(tags=["connections"])
browser_router = APIRouter(include_in_schema=False)


def _connections(request: Request) -> ConnectionService:
    return provided(request, "connections", ConnectionService)


def _authenticator(request: Request) -> Authenticator:
    return provided(request, "authenticator", Authenticator)


Connections = Annotated[ConnectionService, Depends(_connections)]
AuthenticatorDep = Annotated[Authenticator, Depends(_authenticator)]


@router.get("/connections", response_model=list[ConnectionOut], responses=ERROR_RESPONSES)
async def list_connections(
    principal: CurrentPrincipal,
    connections: Connections,
    server: Annotated[str | None, Query(max_length=63)] = None,
    user_id: Annotated[str | None, Query(max_length=36, description="Admins only.")] = None,
    all_users: Annotated[bool, Query(alias="all", description="Admins: everyone's.")] = False,
) -> list[ConnectionOut]:
    """Your connections to servers that take per-user credentials, with their health
    (`active`, `expiring`, `broken`); admins may list a user's or everyone's."""
    return await connections.list(principal, server=server, user_id=user_id, everyone=all_users)


@router.post(
    "/connections/{server}",
    response_model=ConnectionStarted,
    status_code=201,
    responses=ERROR_RESPONSES,
)
async def start_connection(
    request: Request,
    server: str,
    principal: CurrentPrincipal,
    connections: Connections,
    body: Annotated[ConnectionStart | None, Body()] = None,
) -> ConnectionStarted:
    """Connect your own credential: for an OAuth server, the authorization URL to open
    in a browser (the callback stores the tokens); for a secret server, send `secret`."""
    return await connections.start(
        principal, server, body or ConnectionStart(), gateway_base(request)
    )


@router.delete("/connections/{server}", status_code=204, responses=ERROR_RESPONSES)
async def delete_connection(
    server: str,
    principal: CurrentPrincipal,
    connections: Connections,
    user_id: Annotated[str | None, Query(max_length=36, description="Admins only.")] = None,
) -> Response:
    """Disconnect (your own; admins: a user's)."""
    await connections.delete(principal, server, user_id)
    return Response(status_code=204)


@browser_router.get(CALLBACK)
async def connection_callback(
    request: Request, connections: Connections, authenticator: AuthenticatorDep
) -> Response:
    """Back from the backend's authorization server: store the user's tokens."""
    found = await signed_in(request, authenticator)
    browser_user = found[0].user_id if found is not None else None
    try:
        server, next_path = await connections.finish(dict(request.query_params), browser_user)
    except ConnectRefused as exc:
        return message_page("Connection refused", str(exc), 403)
    if next_path and next_path != "/":
        return RedirectResponse(safe_next(next_path), status_code=303, headers=HEADERS)
    return message_page(
        "Connected", f"Your account is connected to {server}. You can close this window.", 200
    )


@browser_router.get(BROWSER_START.replace("{server}", "{name}"))
async def connection_start_page(
    request: Request, name: str, connections: Connections, authenticator: AuthenticatorDep
) -> Response:
    """For a signed-in browser: off to the backend's authorization server."""
    found = await signed_in(request, authenticator)
    if found is None:
        here = quote(BROWSER_START.format(server=name), safe="")
        return RedirectResponse(f"/auth/signin?next={here}", status_code=303)
    try:
        url = await connections.start_in_browser(found[0], name, gateway_base(request))
    except AppError as exc:
        return message_page("Cannot connect", exc.message, exc.status_code)
    return RedirectResponse(url, status_code=302, headers=HEADERS)
