"""REST for identity: ``/me``, ``/keys``, ``/users``, ``/teams``. HTTP in and out only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from gateway.auth.deps import CurrentPrincipal
from gateway.auth.schemas import (
    KeyCreate,
    KeyCreated,
    KeyOut,
    Me,
    MemberAdd,
    MemberOut,
    TeamCreate,
    TeamOut,
    TeamRef,
    TeamUpdate,
    UserCreate,
    UserOut,
    UserUpdate,
)
from gateway.auth.service import IdentityService, TeamView
from gateway.errors import ERROR_RESPONSES, error_responses
from gateway.paging import Limit, Offset
from gateway.provided import provided
from gateway.schemas import Page

router = APIRouter(tags=["identity"])


ERRORS = ERROR_RESPONSES


def _identity(request: Request) -> IdentityService:
    return provided(request, "identity", IdentityService)


def _team_out(view: TeamView) -> TeamOut:
    members = None
    if view.members is not None:
        members = [
            MemberOut(user_id=u.id, email=u.email, name=u.name, role=m.role)
            for m, u in view.members
        ]
    t = view.team
    return TeamOut(
        id=t.id,
        name=t.name,
        description=t.description,
        interface_mode=t.interface_mode,
        created_at=t.created_at,
        members=members,
    )


@router.get("/me", response_model=Me, responses=ERRORS, summary="Who am I")
async def me(request: Request, principal: CurrentPrincipal) -> Me:
    user, teams, key = await _identity(request).me(principal)
    return Me(
        user=UserOut.model_validate(user),
        teams=[TeamRef(id=t.id, name=t.name, role=role) for t, role in teams],
        key=KeyOut.model_validate(key) if key else None,
        permissions_role=principal.role,
        scopes=list(principal.scopes),
    )


# --- keys ---------------------------------------------------------------------------
@router.get("/keys", response_model=Page[KeyOut], responses=ERRORS, summary="List API keys")
async def list_keys(
    request: Request,
    principal: CurrentPrincipal,
    limit: Limit = 100,
    offset: Offset = 0,
    user_id: Annotated[str | None, Query(max_length=36)] = None,
    all: Annotated[bool, Query(description="Admins: every user's keys.")] = False,
    include_revoked: bool = False,
) -> Page[KeyOut]:
    rows, total = await _identity(request).list_keys(
        principal,
        user_id=user_id,
        all_users=all,
        include_revoked=include_revoked,
        limit=limit,
        offset=offset,
    )
    items = [KeyOut.model_validate(k) for k in rows]
    return Page[KeyOut](items=items, total=total, limit=limit, offset=offset)


@router.post(
    "/keys",
    response_model=KeyCreated,
    status_code=201,
    responses=ERRORS,
    summary="Create an API key (the secret is returned once)",
)
async def create_key(request: Request, principal: CurrentPrincipal, body: KeyCreate) -> KeyCreated:
    key, secret = await _identity(request).create_key(principal, body)
    return KeyCreated(**KeyOut.model_validate(key).model_dump(), key=secret)


@router.delete("/keys/{key_id}", status_code=204, responses=ERRORS, summary="Revoke an API key")
async def revoke_key(request: Request, principal: CurrentPrincipal, key_id: str) -> Response:
    await _identity(request).revoke_key(principal, key_id)
    return Response(status_code=204)


# --- users --------------------------------------------------------------------------
@router.get("/users", response_model=Page[UserOut], responses=ERRORS, summary="List users")
async def list_users(
    request: Request, principal: CurrentPrincipal, limit: Limit = 100, offset: Offset = 0
) -> Page[UserOut]:
    rows, total = await _identity(request).list_users(principal, limit=limit, offset=offset)
    return Page[UserOut](
        items=[UserOut.model_validate(u) for u in rows], total=total, limit=limit, offset=offset
    )


@router.post(
    "/users",
    response_model=UserOut,
    status_code=201,
    responses=error_responses(409),
    summary="Create a user",
)
async def create_user(request: Request, principal: CurrentPrincipal, body: UserCreate) -> UserOut:
    return UserOut.model_validate(await _identity(request).create_user(principal, body))


@router.get("/users/{user_id}", response_model=UserOut, responses=ERRORS, summary="Get a user")
async def get_user(request: Request, principal: CurrentPrincipal, user_id: str) -> UserOut:
    return UserOut.model_validate(await _identity(request).get_user(principal, user_id))


@router.patch(
    "/users/{user_id}",
    response_model=UserOut,
    responses=error_responses(409),
    summary="Change a user's name, role or active flag",
)
async def update_user(
    request: Request, principal: CurrentPrincipal, user_id: str, body: UserUpdate
) -> UserOut:
    return UserOut.model_validate(await _identity(request).update_user(principal, user_id, body))


# --- teams --------------------------------------------------------------------------
@router.get("/teams", response_model=Page[TeamOut], responses=ERRORS, summary="List teams")
async def list_teams(
    request: Request, principal: CurrentPrincipal, limit: Limit = 100, offset: Offset = 0
) -> Page[TeamOut]:
    rows, total = await _identity(request).list_teams(principal, limit=limit, offset=offset)
    return Page[TeamOut](
        items=[_team_out(TeamView(t)) for t in rows], total=total, limit=limit, offset=offset
    )


@router.post(
    "/teams",
    response_model=TeamOut,
    status_code=201,
    responses=error_responses(409),
    summary="Create a team",
)
async def create_team(request: Request, principal: CurrentPrincipal, body: TeamCreate) -> TeamOut:
    team = await _identity(request).create_team(principal, body)
    return _team_out(TeamView(team, []))


@router.get(
    "/teams/{team}", response_model=TeamOut, responses=ERRORS, summary="A team and its members"
)
async def get_team(request: Request, principal: CurrentPrincipal, team: str) -> TeamOut:
    return _team_out(await _identity(request).get_team(principal, team))


@router.patch("/teams/{team}", response_model=TeamOut, responses=ERRORS, summary="Change a team")
async def update_team(
    request: Request, principal: CurrentPrincipal, team: str, body: TeamUpdate
) -> TeamOut:
    return _team_out(await _identity(request).update_team(principal, team, body))


@router.post(
    "/teams/{team}/members",
    response_model=TeamOut,
    responses=ERRORS,
    summary="Add a member (or change their team role)",
)
async def add_member(
    request: Request, principal: CurrentPrincipal, team: str, body: MemberAdd
) -> TeamOut:
    return _team_out(await _identity(request).add_member(principal, team, body))


@router.delete(
    "/teams/{team}/members/{user_id}",
    status_code=204,
    responses=ERRORS,
    summary="Remove a member",
)
async def remove_member(
    request: Request, principal: CurrentPrincipal, team: str, user_id: str
) -> Response:
    await _identity(request).remove_member(principal, team, user_id)
    return Response(status_code=204)
