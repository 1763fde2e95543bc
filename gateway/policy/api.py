"""`/api/v1/policies`: the policy document (YAML or JSON), its versions, and explain."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from gateway.auth.deps import CurrentPrincipal
from gateway.errors import ERROR_RESPONSES, AppError, error_responses
from gateway.policy.document import parse_text, to_yaml
from gateway.policy.limits import Limiter
from gateway.policy.schemas import (
    ApplyOut,
    EvaluateIn,
    EvaluateOut,
    PolicyOut,
    UsageOut,
    VersionOut,
)
from gateway.policy.service import PolicyService
from gateway.provided import provided

router = APIRouter(tags=["policies"])
usage_router = APIRouter(tags=["usage"])

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def _service(request: Request) -> PolicyService:
    return provided(request, "policies", PolicyService)


Service = Annotated[PolicyService, Depends(_service)]


def _limiter(request: Request) -> Limiter | None:
    found = getattr(request.app.state, "limiter", None)
    return found if isinstance(found, Limiter) else None


CurrentLimiter = Annotated[Limiter | None, Depends(_limiter)]


class InvalidJson(AppError):
    code = "invalid_json"


def wants_yaml(request: Request, format: str | None) -> bool:
    if format is not None:
        return format == "yaml"
    accept = request.headers.get("accept", "")
    return any(t in accept for t in YAML_TYPES)


@router.get(
    "/policies",
    responses={
        **ERROR_RESPONSES,
        200: {"content": {"application/json": {}, "application/yaml": {}}},
    },
    response_model=PolicyOut,
)
async def get_policy(
    request: Request,
    principal: CurrentPrincipal,
    service: Service,
    format: Annotated[Literal["json", "yaml"] | None, Query()] = None,
) -> Any:
    """The policy in force: JSON with its version, or the YAML document alone
    (``?format=yaml`` or ``Accept: application/yaml``), as ``mcpgw policies export``."""
    if wants_yaml(request, format):
        return Response(to_yaml(service.document(principal)), media_type="application/yaml")
    return await service.show(principal)


@router.put(
    "/policies",
    responses=error_responses(409),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The whole document: top-level `rules` and `limits` lists.",
            "content": {
                "application/yaml": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
)
async def put_policy(
    request: Request,
    principal: CurrentPrincipal,
    service: Service,
    dry_run: Annotated[bool, Query(description="Show the plan; store nothing.")] = False,
) -> ApplyOut:
    """Replace the policy with the document in the body (YAML or JSON). The answer is
    the plan (rules and limits added, removed, changed); with ``dry_run`` nothing is
    stored. An invalid document is refused whole (422 naming the rule and field)."""
    return await service.apply(principal, await read_document(request), dry_run=dry_run)


async def read_document(request: Request) -> Any:
    """The request body as a parsed document: JSON as given (validated by the service,
    so errors name rules), YAML parsed (its syntax errors said here)."""
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    text = body.decode("utf-8", errors="replace")
    if content_type == "application/json":
        try:
            return json.loads(text) if text.strip() else None
        except ValueError as exc:
            raise InvalidJson(f"request body is not valid JSON: {exc}") from None
    return parse_text(text).model_dump(mode="json")


@router.get("/policies/versions", responses=ERROR_RESPONSES)
async def list_versions(
    principal: CurrentPrincipal,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[VersionOut]:
    """Applied versions, newest first, with who applied them and what changed."""
    return await service.versions(principal, limit)


@router.post("/policies/evaluate", responses=ERROR_RESPONSES)
async def evaluate(body: EvaluateIn, principal: CurrentPrincipal, service: Service) -> EvaluateOut:
    """Explain: the decision for a subject doing an action on a target, the rule that
    decided it and every rule that matched."""
    return await service.evaluate(principal, body)


@usage_router.get("/usage/limits", responses=ERROR_RESPONSES)
async def usage_limits(
    principal: CurrentPrincipal,
    service: Service,
    limiter: CurrentLimiter,
    target: Annotated[
        str | None, Query(max_length=512, description="A `server__tool`: its per-tool counts.")
    ] = None,
    user: Annotated[str | None, Query(description="Another user (needs policies:read).")] = None,
    key: Annotated[str | None, Query(description="Another key's prefix or id.")] = None,
) -> UsageOut:
    """What is left of each limit that applies: used, remaining, when it resets."""
    return await service.usage(principal, limiter, target, user, key)
