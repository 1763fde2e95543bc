"""`/api/v1/settings/telemetry`: where traces go, changed at run time."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from gateway.auth.deps import CurrentPrincipal
from gateway.errors import ERROR_RESPONSES
from gateway.observability.exporters import TelemetryConfig
from gateway.observability.settings import TelemetryService
from gateway.provided import provided

router = APIRouter(tags=["settings"])


def _service(request: Request) -> TelemetryService:
    return provided(request, "telemetry_settings", TelemetryService)


Service = Annotated[TelemetryService, Depends(_service)]


@router.get("/settings/telemetry", responses=ERROR_RESPONSES)
async def get_telemetry(principal: CurrentPrincipal, service: Service) -> dict[str, Any]:
    """The tracing configuration (credentials are never returned: only whether set)."""
    return service.view(principal)


@router.put("/settings/telemetry", responses=ERROR_RESPONSES)
async def put_telemetry(
    body: TelemetryConfig, principal: CurrentPrincipal, service: Service
) -> dict[str, Any]:
    """Replace the exporter without a restart (spans in flight go to the old one)."""
    return await service.replace(principal, body)


@router.post("/settings/telemetry/test", responses=ERROR_RESPONSES)
async def test_telemetry(principal: CurrentPrincipal, service: Service) -> dict[str, Any]:
    """Send one test span to the configured exporter; whether it was delivered."""
    return await service.test(principal)
