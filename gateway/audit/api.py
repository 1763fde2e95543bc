"""`/api/v1/audit` (search, one row, export, live tail) and `/api/v1/usage`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from gateway.audit.entry import OUTCOMES, ROUTES
from gateway.audit.repository import AuditFilter
from gateway.audit.schemas import AuditItem, AuditPage, UsageOut
from gateway.audit.service import AuditLog, UsageBy
from gateway.auth.deps import CurrentPrincipal
from gateway.errors import ERROR_RESPONSES, InvalidInput, NotFound
from gateway.provided import provided

router = APIRouter(tags=["audit"])

FILTERS = frozenset(
    {
        "server",
        "target",
        "action",
        "outcome",
        "route",
        "actor",
        "team",
        "request_id",
        "since",
        "until",
        "q",
    }
)


def _audit(request: Request) -> AuditLog:
    return provided(request, "audit", AuditLog)


Audit = Annotated[AuditLog, Depends(_audit)]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def audit_filter(
    request: Request,
    server: Annotated[str | None, Query(max_length=128)] = None,
    target: Annotated[
        str | None, Query(max_length=512, description="Tool, resource, prompt, skill, sandbox…")
    ] = None,
    action: Annotated[
        str | None, Query(max_length=64, description="e.g. tools/call, server.create, sandbox.*")
    ] = None,
    outcome: Annotated[str | None, Query(description=" | ".join(OUTCOMES))] = None,
    route: Annotated[str | None, Query(description=" | ".join(ROUTES))] = None,
    actor: Annotated[
        str | None, Query(max_length=320, description="User id, email or key prefix.")
    ] = None,
    team: Annotated[str | None, Query(max_length=36)] = None,
    request_id: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601; UTC when no zone.")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601, exclusive.")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text in target or error.")] = None,
) -> AuditFilter:
    """The filters of a search, export or tail; an unknown parameter is an error (a typo
    would otherwise widen the search silently)."""
    known = FILTERS | _EXTRA.get(request.url.path.rsplit("/", 1)[-1], frozenset())
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise InvalidInput(
            f"unknown query parameter(s) {unknown}; filters are {sorted(FILTERS)}",
            code="unknown_filter",
        )
    if outcome is not None and outcome not in OUTCOMES:
        raise InvalidInput(f"outcome must be one of {list(OUTCOMES)}", code="bad_filter")
    if route is not None and route not in ROUTES:
        raise InvalidInput(f"route must be one of {list(ROUTES)}", code="bad_filter")
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and since >= until:
        raise InvalidInput("since must be before until", code="bad_filter")
    return AuditFilter(
        server=server,
        target=target,
        action=action,
        outcome=outcome,
        route=route,
        actor=actor,
        team=team,
        request_id=request_id,
        since=since,
        until=until,
        q=q,
    )


_EXTRA = {
    "audit": frozenset({"limit", "cursor"}),
    "export": frozenset({"format"}),
    "stream": frozenset({"backlog"}),
}
Filter = Annotated[AuditFilter, Depends(audit_filter)]


@router.get("/audit", response_model=AuditPage, responses=ERROR_RESPONSES)
async def search_audit(
    audit: Audit,
    principal: CurrentPrincipal,
    f: Filter,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> AuditPage:
    """Audited events newest first; `next_cursor` pages to older ones. Needs
    `audit:read`; a non-admin sees their teams' rows and their own."""
    items, next_cursor = await audit.search(principal, f, limit, cursor)
    return AuditPage(items=items, next_cursor=next_cursor)


@router.get(
    "/audit/export",
    responses={**ERROR_RESPONSES, 200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
)
async def export_audit(
    audit: Audit,
    principal: CurrentPrincipal,
    f: Filter,
    format: Literal["jsonl", "csv"] = "jsonl",
) -> StreamingResponse:
    """Every matching row, streamed (newest first) as JSON lines or CSV."""
    body = await audit.export(principal, f, format)
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    name = f"audit-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.{format}"
    return StreamingResponse(
        body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.get(
    "/audit/stream",
    responses={**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}}}},
)
async def tail_audit(
    audit: Audit,
    principal: CurrentPrincipal,
    f: Filter,
    backlog: Annotated[int, Query(ge=0, le=500, description="Recent rows sent first.")] = 0,
) -> EventSourceResponse:
    """Live tail: an `audit` event per row as it is stored (SSE)."""
    principal.require("audit:read")
    rows = audit.tail(principal, f, backlog=backlog)

    async def events() -> AsyncIterator[ServerSentEvent]:
        async for item in rows:
            yield ServerSentEvent(data=item.model_dump_json(), event="audit", id=item.id)

    return EventSourceResponse(events(), ping=15)


@router.get("/audit/{event_id}", response_model=AuditItem, responses=ERROR_RESPONSES)
async def get_audit(audit: Audit, principal: CurrentPrincipal, event_id: str) -> AuditItem:
    item = await audit.get(principal, event_id)
    if item is None:
        raise NotFound(f"no audit event {event_id!r}", code="audit_event_not_found")
    return item


@router.get("/usage", response_model=UsageOut, responses=ERROR_RESPONSES)
async def usage(
    audit: Audit,
    principal: CurrentPrincipal,
    by: UsageBy = "server",
    since: datetime | None = None,
    until: datetime | None = None,
    server: Annotated[str | None, Query(max_length=128)] = None,
) -> UsageOut:
    """Tool calls, errors, p50/p95 latency and estimated tokens by server, tool, user or
    team over [since, until) (from the audit trail)."""
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and since >= until:
        raise InvalidInput("since must be before until", code="bad_filter")
    items = await audit.usage(principal, by, since, until, server)
    return UsageOut(by=by, since=since, until=until, items=items)
