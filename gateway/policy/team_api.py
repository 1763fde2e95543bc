"""`/api/v1/teams/{team}/quotas` and `/api/v1/teams/{team}/policy`: a team's quotas
(set by platform admins) and its own policy document (its owners' and admins')."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from gateway.auth.deps import CurrentPrincipal
from gateway.errors import ERROR_RESPONSES, error_responses
from gateway.policy.api import CurrentLimiter, read_document, wants_yaml
from gateway.policy.document import to_yaml
from gateway.policy.quotas import QuotasIn, QuotasOut, TeamQuotas
from gateway.policy.schemas import ApplyOut, PolicyOut, VersionOut
from gateway.policy.service import PolicyService
from gateway.policy.teams import TeamPolicies
from gateway.provided import provided

router = APIRouter(tags=["teams"])


def _policies(request: Request) -> TeamPolicies:
    return provided(request, "policies", PolicyService).teams


def _quotas(request: Request) -> TeamQuotas:
    return provided(request, "policies", PolicyService).quotas


Policies = Annotated[TeamPolicies, Depends(_policies)]
Quotas = Annotated[TeamQuotas, Depends(_quotas)]


@router.get("/teams/{team}/quotas", responses=ERROR_RESPONSES)
async def get_quotas(
    team: str, principal: CurrentPrincipal, quotas: Quotas, limiter: CurrentLimiter
) -> QuotasOut:
    """The team's quotas (null: unlimited) and what it uses of them."""
    return await quotas.show(principal, team, limiter)


@router.put("/teams/{team}/quotas", responses=ERROR_RESPONSES)
async def put_quotas(
    team: str,
    body: QuotasIn,
    principal: CurrentPrincipal,
    quotas: Quotas,
    limiter: CurrentLimiter,
) -> QuotasOut:
    """Set the team's quotas (admins). A quota left out (or null) is unlimited; a
    calls_per_day change is in force on every replica within a second or so."""
    return await quotas.put(principal, team, body, limiter)


@router.get(
    "/teams/{team}/policy",
    responses={
        **ERROR_RESPONSES,
        200: {"content": {"application/json": {}, "application/yaml": {}}},
    },
    response_model=PolicyOut,
)
async def get_team_policy(
    request: Request,
    team: str,
    principal: CurrentPrincipal,
    policies: Policies,
    format: Annotated[Literal["json", "yaml"] | None, Query()] = None,
) -> Any:
    """The team's document in force: JSON with its version, or the YAML alone
    (``?format=yaml``), as ``mcpgw policies export --team``."""
    if wants_yaml(request, format):
        document = await policies.document(principal, team)
        return Response(to_yaml(document), media_type="application/yaml")
    return await policies.show(principal, team)


@router.put(
    "/teams/{team}/policy",
    responses=error_responses(409),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The team's whole document (the platform document's grammar).",
            "content": {
                "application/yaml": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
)
async def put_team_policy(
    request: Request,
    team: str,
    principal: CurrentPrincipal,
    policies: Policies,
    dry_run: Annotated[bool, Query(description="Show the plan; store nothing.")] = False,
) -> ApplyOut:
    """Replace the team's document (its owners, admins). Its rules apply to the team's
    members only and can only narrow what the platform policy allows; its limits count
    the team's members."""
    return await policies.apply(principal, team, await read_document(request), dry_run=dry_run)


@router.get("/teams/{team}/policy/versions", responses=ERROR_RESPONSES)
async def team_policy_versions(
    team: str,
    principal: CurrentPrincipal,
    policies: Policies,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[VersionOut]:
    """The team document's applied versions, newest first."""
    return await policies.versions(principal, team, limit)
