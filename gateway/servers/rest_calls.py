"""REST `tools/execute` (and an async call's job result): a call through the pipeline,
answered as JSON with its duration, a backend's JSON-RPC error reported in
``backend_error``."""

from __future__ import annotations

import time
from typing import Any

from gateway.auth.principal import Principal
from gateway.backend_errors import BackendRequestError
from gateway.mcp.results import tool_error_body
from gateway.servers.calls import CallTarget
from gateway.servers.pipeline import CallContext
from gateway.servers.service import ServerService


async def execute(
    servers: ServerService,
    principal: Principal,
    tool: str,
    arguments: dict[str, Any],
    timeout: float | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """REST `tools/execute`: :meth:`resolve` and :meth:`call` ``{server}__{tool}``,
    answered as JSON with the call's duration.

    A backend that answers the call with a JSON-RPC error (bad arguments, unknown
    tool) is reported as such: its code and message in the text and, for
    programs, in ``backend_error`` (what `/mcp` passes on as the JSON-RPC error).
    """
    target = servers.resolve(principal, tool)
    started = time.perf_counter()
    ctx = CallContext(route="rest", timeout=timeout, meta=meta)
    body = await call_body(servers, principal, target, arguments, ctx)
    body["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return body


async def call_body(
    servers: ServerService,
    principal: Principal,
    target: CallTarget,
    arguments: dict[str, Any],
    ctx: CallContext,
) -> dict[str, Any]:
    """:meth:`call`, answered as the JSON of REST `tools/execute` (also an async call's
    job result): the tool result, or the backend's JSON-RPC error in ``backend_error``."""
    try:
        result = await servers.call(principal, target, arguments, ctx)
        body = result.model_dump(by_alias=True, exclude_none=True, mode="json")
    except BackendRequestError as exc:
        body = tool_error_body(
            f"server {target.server!r} answered tool {target.tool!r} with JSON-RPC "
            f"error {exc.error.code}: {exc.error.message}"
        )
        body["backend_error"] = exc.error.model_dump(mode="json", exclude_none=True)
    body.pop("resultType", None)
    body.setdefault("isError", False)
    return body
