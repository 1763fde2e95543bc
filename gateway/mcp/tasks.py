"""MCP tasks on the protocol front: where they enter the SDK server.

The servers' surface makes tasks of tool calls and answers the `tasks/*` methods
(gateway/servers/mcp/tasks.py); the front only lets it: a `tools/call` is offered to
it before the SDK's typed handler (whose result types know no task), the `tasks/*`
methods are registered, and the capabilities say so — the 2026-07-28 tasks extension
in `server/discover`, 2025-11-25's `capabilities.tasks` in `initialize`.
"""

from __future__ import annotations

from typing import Any

from mcp.server import Server
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import RequestParams, ServerCapabilities, ServerTasksCapability
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ConfigDict

from gateway.mcp.handlers import GatewayHandlers
from gateway.mcp.surface import ServersSurface

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
TASK_METHODS = ("tasks/get", "tasks/result", "tasks/list", "tasks/cancel", "tasks/update")
# 2025-11-25 (tasks, experimental): tasks are listed, cancelled, and made of tools/call.
_HANDSHAKE_TASKS = ServerTasksCapability.model_validate(
    {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
)


class _TaskParams(RequestParams):
    """`tasks/*` params: checked by the servers' surface, which reads them raw."""

    model_config = ConfigDict(extra="allow")


def serve_tasks(server: Server[Any], h: GatewayHandlers, servers: ServersSurface) -> None:
    """Let ``servers`` serve MCP tasks on ``server`` (see the module docstring)."""

    async def tasks(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/call":
            principal, target = h.context(ctx)
            created = await servers.task_call(ctx, principal, target, ctx.params)
            if created is not None:
                return created
        return await call_next(ctx)

    async def task_request(ctx: ServerRequestContext[Any, Any], _: Any) -> HandlerResult:
        principal, _target = h.context(ctx)
        return await servers.task_request(ctx, principal, ctx.method, ctx.params)

    server.middleware.append(tasks)
    for method in TASK_METHODS:
        server.add_request_handler(method, _TaskParams, task_request)
    server.extensions[TASKS_EXTENSION] = {}


def with_handshake_tasks(
    found: ServerCapabilities, extensions: dict[str, Any], protocol_version: str | None
) -> ServerCapabilities:
    """``found`` with 2025-11-25's `capabilities.tasks` when this is a handshake-era
    answer of a server that serves tasks (2026-07-28 has the extension instead)."""
    if TASKS_EXTENSION in extensions and protocol_version not in MODERN_PROTOCOL_VERSIONS:
        found.tasks = _HANDSHAKE_TASKS
    return found
