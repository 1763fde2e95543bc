"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: it can serve)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway import __version__, migrate
from gateway.auth.deps import current_principal
from gateway.errors import ErrorBody
from gateway.state import get_state

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get(
    "/readyz",
    summary="Readiness: database reachable and schema at head",
    responses={503: {"model": ErrorBody, "description": "Not ready; `checks` says why"}},
)
async def readyz(request: Request) -> JSONResponse:
    state = get_state(request)
    checks: dict[str, Any] = {}
    ready = True
    try:
        async with asyncio.timeout(3):
            await state.db.ping()
            current = await migrate.current_revision(state.db.engine)
        checks["database"] = {"status": "ok", "dialect": state.db.dialect}
        at_head = current == state.head_revision
        checks["migrations"] = {
            "status": "ok" if at_head else "behind",
            "current": current,
            "head": state.head_revision,
        }
        ready = at_head
    except Exception as exc:  # any failure to reach the database means "not ready"
        checks["database"] = {"status": "error", "error": type(exc).__name__}
        ready = False
    # Backends are reported, not required: one broken MCP server must not take the
    # gateway out of a load balancer.
    checks["servers"] = {
        name: {"status": runtime.health.status, "last_error": runtime.health.last_error}
        for name, runtime in sorted(state.servers.pool.runtimes().items())
    }
    if ready:
        return JSONResponse({"status": "ready", "checks": checks})
    return JSONResponse(
        {"code": "not_ready", "message": "the gateway cannot serve yet", "checks": checks},
        status_code=503,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics (needs 'audit:read' unless MCPGW_METRICS_PUBLIC)",
    response_class=Response,
)
async def metrics(request: Request) -> Response:
    state = get_state(request)
    if not state.settings.metrics_public:
        principal = await current_principal(request)
        principal.require("audit:read")
    await state.metrics.refresh()
    openmetrics = "application/openmetrics-text" in request.headers.get("accept", "")
    body, content_type = state.metrics.render(openmetrics)
    return Response(body, media_type=content_type)
