"""REST for pillar 1: ``/servers``, ``/tools``, ``/tools/execute``, ``/tools/search``.
HTTP in and out only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from gateway.auth.deps import CurrentPrincipal
from gateway.errors import ERROR_RESPONSES, InvalidInput, error_responses
from gateway.jobs.schemas import JobAccepted
from gateway.mcp.front import McpFront
from gateway.paging import Limit, Offset
from gateway.provided import provided
from gateway.schemas import Page
from gateway.servers import rest_calls
from gateway.servers.cache.admin import (
    CacheCleared,
    CacheStatsOut,
    cache_stats,
    clear_cache,
    stats_of,
)
from gateway.servers.calls import qualified
from gateway.servers.models import McpServer
from gateway.servers.schemas import (
    CatalogItemOut,
    ExecuteRequest,
    ExecuteResult,
    HealthOut,
    KeywordsIn,
    SearchRequest,
    SearchResult,
    ServerCreate,
    ServerOut,
    ServerUpdate,
    ServerVersionOut,
)
from gateway.servers.service import ServerService
from gateway.servers.tasks import CallTasks
from gateway.servers.transforms import split_config

router = APIRouter(tags=["servers"])

Wait = Annotated[
    bool,
    Query(
        description="Wait for the server to connect and its catalog to load (up to the "
        "connect timeout); otherwise that happens in the background."
    ),
]


def _servers(request: Request) -> ServerService:
    return provided(request, "servers", ServerService)


def _health(service: ServerService, row: McpServer) -> HealthOut:
    h = service.health(row)
    return HealthOut(
        status=h.status,
        last_error=h.last_error,
        latency_ms=h.latency_ms,
        checked_at=h.checked_at,
        restarts=h.restarts,
        in_flight=h.in_flight,
        protocol_version=h.protocol_version,
        breaker=service.resilience.describe(row.name) if service.resilience else None,
        replicas=h.replicas(),
    )


def _server_out(service: ServerService, row: McpServer, tool_count: int) -> ServerOut:
    masked = service.secret_names(row)
    config, transforms = split_config(row.config)
    return ServerOut(
        id=row.id,
        name=row.name,
        type=row.type,
        config=config,
        description=row.description,
        tags=list(row.tags or []),
        enabled=row.enabled,
        env=dict(row.env or {}),
        secrets=masked["env"],
        secret_headers=masked["headers"],
        team_id=row.team_id,
        owner_id=row.owner_id,
        max_concurrency=row.max_concurrency,
        limits=row.limits,
        transforms=transforms,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        health=_health(service, row),
        tool_count=tool_count,
        cache=stats_of(service, row),
    )


@router.get("/servers", response_model=Page[ServerOut], responses=ERROR_RESPONSES)
async def list_servers(
    request: Request, principal: CurrentPrincipal, limit: Limit = 100, offset: Offset = 0
) -> Page[ServerOut]:
    service = _servers(request)
    rows, total, counts = await service.list_servers(principal, limit=limit, offset=offset)
    items = [_server_out(service, r, counts.get(r.id, 0)) for r in rows]
    return Page[ServerOut](items=items, total=total, limit=limit, offset=offset)


@router.post(
    "/servers",
    response_model=ServerOut,
    status_code=201,
    responses=ERROR_RESPONSES,
    summary="Register a server",
)
async def register_server(
    request: Request, principal: CurrentPrincipal, body: ServerCreate, wait: Wait = False
) -> ServerOut:
    service = _servers(request)
    row = await service.register(principal, body)
    await service.connect(row.name, wait=wait)
    row, count = await service.get(principal, row.name)
    return _server_out(service, row, count)


@router.get("/servers/{name}", response_model=ServerOut, responses=ERROR_RESPONSES)
async def get_server(request: Request, principal: CurrentPrincipal, name: str) -> ServerOut:
    service = _servers(request)
    row, count = await service.get(principal, name)
    return _server_out(service, row, count)


@router.patch("/servers/{name}", response_model=ServerOut, responses=ERROR_RESPONSES)
async def update_server(
    request: Request, principal: CurrentPrincipal, name: str, body: ServerUpdate, wait: Wait = False
) -> ServerOut:
    service = _servers(request)
    await service.update(principal, name, body)
    await service.connect(name, wait=wait)
    row, count = await service.get(principal, name)
    return _server_out(service, row, count)


@router.delete("/servers/{name}", status_code=204, responses=ERROR_RESPONSES)
async def remove_server(request: Request, principal: CurrentPrincipal, name: str) -> Response:
    await _servers(request).remove(principal, name)
    return Response(status_code=204)


@router.get(
    "/servers/{name}/versions", response_model=list[ServerVersionOut], responses=ERROR_RESPONSES
)
async def server_versions(
    request: Request, principal: CurrentPrincipal, name: str
) -> list[ServerVersionOut]:
    rows = await _servers(request).versions(principal, name)
    return [ServerVersionOut.model_validate(r) for r in rows]


@router.get("/servers/{name}/health", response_model=HealthOut, responses=ERROR_RESPONSES)
async def server_health(request: Request, principal: CurrentPrincipal, name: str) -> HealthOut:
    service = _servers(request)
    row, _ = await service.get(principal, name)
    return _health(service, row)


@router.get("/servers/{name}/cache", response_model=CacheStatsOut, responses=ERROR_RESPONSES)
async def server_cache(request: Request, principal: CurrentPrincipal, name: str) -> CacheStatsOut:
    """The server's response cache in this process: hits, misses, hit rate, entries."""
    return await cache_stats(_servers(request), principal, name)


@router.delete("/servers/{name}/cache", response_model=CacheCleared, responses=ERROR_RESPONSES)
async def clear_server_cache(
    request: Request, principal: CurrentPrincipal, name: str
) -> CacheCleared:
    """Forget the server's cached answers (docs/resilience.md#response-cache)."""
    return await clear_cache(_servers(request), principal, name)


@router.post(
    "/servers/{name}/refresh", responses=error_responses(409), summary="Re-read the catalog"
)
async def refresh_server(
    request: Request, principal: CurrentPrincipal, name: str
) -> dict[str, int]:
    added, changed, removed = await _servers(request).refresh_for(principal, name)
    return {"added": added, "changed": changed, "removed": removed}


def _catalog_page(
    service: ServerService, rows: list[tuple[Any, str]], total: int, limit: int, offset: int
) -> Page[CatalogItemOut]:
    items = [_catalog_out(entry, server, service) for entry, server in rows]
    return Page[CatalogItemOut](items=items, total=total, limit=limit, offset=offset)


def _catalog_out(entry: Any, server: str, service: ServerService | None = None) -> CatalogItemOut:
    # A tool of a server known to be unavailable is listed all the same, marked.
    mark = (
        service.unavailable(server, entry.name)
        if service is not None and entry.kind == "tool" and service.availability.marked
        else None
    )
    return CatalogItemOut(
        available=mark is None,
        unavailable=mark.meta() if mark is not None else None,
        server=server,
        kind=entry.kind,
        name=entry.name,
        qualified_name=qualified(server, entry.name) if entry.kind == "tool" else None,
        description=entry.description,
        definition=entry.definition,
        definition_hash=entry.definition_hash,
        keywords=list(entry.keywords or ()),
    )


@router.put(
    "/servers/{name}/tools/{tool}/keywords",
    response_model=CatalogItemOut,
    responses=ERROR_RESPONSES,
    summary="Set a tool's search keywords (matched by tool search like its name)",
)
async def set_tool_keywords(
    request: Request, principal: CurrentPrincipal, name: str, tool: str, body: KeywordsIn
) -> CatalogItemOut:
    keywords = list(dict.fromkeys(body.keywords))
    entry = await _servers(request).set_keywords(principal, name, tool, keywords)
    return _catalog_out(entry, name)


@router.get("/servers/{name}/tools", response_model=Page[CatalogItemOut], responses=ERROR_RESPONSES)
async def server_tools(
    request: Request,
    principal: CurrentPrincipal,
    name: str,
    kind: Annotated[str, Query(pattern="^(tool|resource|resource_template|prompt)$")] = "tool",
    limit: Limit = 1000,
    offset: Offset = 0,
) -> Page[CatalogItemOut]:
    rows, total = await _servers(request).catalog(
        principal, server=name, kind=kind, limit=limit, offset=offset
    )
    return _catalog_page(_servers(request), rows, total, limit, offset)


@router.get("/tools", response_model=Page[CatalogItemOut], responses=error_responses(404))
async def list_tools(
    request: Request,
    principal: CurrentPrincipal,
    q: Annotated[str | None, Query(max_length=200, description="Substring filter.")] = None,
    server: Annotated[str | None, Query(max_length=63)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[CatalogItemOut]:
    rows, total = await _servers(request).catalog(
        principal, server=server, query=q, limit=limit, offset=offset
    )
    return _catalog_page(_servers(request), rows, total, limit, offset)


@router.post(
    "/tools/execute",
    response_model=ExecuteResult,
    responses={
        **error_responses(404),
        202: {"model": JobAccepted, "description": '`"async": true`: the call\'s job'},
    },
    summary="Call a tool; backend failures come back with isError=true",
)
async def execute_tool(request: Request, principal: CurrentPrincipal, body: ExecuteRequest) -> Any:
    if body.run_async:
        tasks = provided(request, "call_tasks", CallTasks)
        job = await tasks.execute(principal, body.tool, body.arguments, body.timeout)
        accepted = JobAccepted(job_id=job.id, status=job.status)
        return JSONResponse(accepted.model_dump(), status_code=202)
    return await rest_calls.execute(
        _servers(request), principal, body.tool, body.arguments, body.timeout, body.meta
    )


@router.post(
    "/tools/search",
    response_model=SearchResult,
    responses=error_responses(422),
    summary="Find tools for a task (what SEARCH_TOOLS answers on /mcp)",
)
async def search_tools(
    request: Request, principal: CurrentPrincipal, body: SearchRequest
) -> dict[str, Any]:
    front = provided(request, "mcp_front", McpFront)
    result = await front.handlers.search(principal, {"query": body.query, "limit": body.limit})
    if result.is_error or result.structured_content is None:
        raise InvalidInput(str(getattr(result.content[0], "text", "bad search")))
    return dict(result.structured_content)
