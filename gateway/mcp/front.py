"""The MCP protocol front: Streamable HTTP at `/mcp` and `/mcp/servers/{name}`.

Protocol mechanics (both eras: 2025-11-25 sessions with `Mcp-Session-Id`, GET
stream and DELETE; 2026-07-28 stateless requests with `server/discover`) come
from the official SDK's session manager. The gateway adds authentication in
front of it and answers the requests from its own catalog and session pool.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.types import Message, Receive, Scope, Send

from gateway import __version__
from gateway.auth.authenticator import Authenticator
from gateway.auth.principal import Principal
from gateway.config import Settings
from gateway.errors import Unauthenticated
from gateway.mcp.view import CatalogView
from gateway.servers.runtimes.base import BackendError
from gateway.servers.service import ServerService, mask_result, split_qualified

log = logging.getLogger("gateway.mcp")

PRINCIPAL_KEY = "mcpgw.principal"
TARGET_KEY = "mcpgw.target"
SESSION_HEADER = b"mcp-session-id"
INVALID_PARAMS = -32602

INSTRUCTIONS = (
    "MCP Gateway: every tool you may use, from every MCP server registered with the "
    "gateway. Tool names are '<server>__<tool>'."
)


def _error_result(message: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)], is_error=True
    )


class McpFront:
    """Builds the SDK servers and serves them behind gateway authentication."""

    def __init__(
        self, settings: Settings, servers: ServerService, authenticator: Authenticator
    ) -> None:
        self.settings = settings
        self.servers = servers
        self.authenticator = authenticator
        self.view = CatalogView(servers)
        # Which user opened which 2025-11-25 session: another key may not use it.
        self._session_owner: OrderedDict[str, str] = OrderedDict()
        self.aggregate = Server(
            "mcp-gateway",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self.single = Server(
            "mcp-gateway",
            version=__version__,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=list(settings.mcp_allowed_hosts),
            allowed_origins=list(settings.mcp_allowed_origins),
        )
        self.managers = {
            name: StreamableHTTPSessionManager(
                app=server,
                security_settings=security,
                session_idle_timeout=settings.mcp_session_idle_seconds,
                max_request_body_size=settings.max_request_bytes,
            )
            for name, server in (("aggregate", self.aggregate), ("single", self.single))
        }

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Run the session managers (their task groups live for the app's lifetime)."""
        async with AsyncExitStack() as stack:
            for manager in self.managers.values():
                await stack.enter_async_context(manager.run())
            yield

    # --- ASGI ---------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = scope.get("path_params", {}).get("name")
        try:
            principal = await self._authenticate(scope)
        except Unauthenticated as exc:
            await _http_error(send, 401, exc.code, exc.message, {"www-authenticate": "Bearer"})
            return
        session_id = _header(scope, SESSION_HEADER)
        if session_id is not None:
            owner = self._session_owner.get(session_id)
            if owner is not None and owner != principal.user_id:
                await _http_error(send, 404, "session_not_found", "no such session")
                return
        if target is not None and target not in self.view.visible_servers(principal):
            await _http_error(send, 404, "server_not_found", f"no server named {target!r}")
            return
        scope[PRINCIPAL_KEY] = principal
        scope[TARGET_KEY] = target
        scope.setdefault("state", {})["user_id"] = principal.user_id
        manager = self.managers["single" if target else "aggregate"]

        async def remember_session(message: Message) -> None:
            if message["type"] == "http.response.start" and session_id is None:
                for name, value in message.get("headers", []):
                    if name.lower() == SESSION_HEADER:
                        self._remember(value.decode("latin-1"), principal.user_id)
            await send(message)

        await manager.handle_request(scope, receive, remember_session)

    def _remember(self, session_id: str, user_id: str) -> None:
        self._session_owner[session_id] = user_id
        while len(self._session_owner) > 100_000:
            self._session_owner.popitem(last=False)

    async def _authenticate(self, scope: Scope) -> Principal:
        header = _header(scope, b"authorization")
        if not header:
            if not self.settings.auth_required:
                return await self._development_principal()
            raise Unauthenticated(
                "missing Authorization header; send 'Authorization: Bearer <key>'"
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("Authorization header must be 'Bearer <key>'")
        return await self.authenticator.authenticate(token.strip())

    async def _development_principal(self) -> Principal:
        key = self.settings.bootstrap_api_key
        if key is None:
            raise Unauthenticated(
                "MCPGW_AUTH_REQUIRED=false needs MCPGW_BOOTSTRAP_API_KEY to act as its admin"
            )
        return await self.authenticator.authenticate(key.get_secret_value())

    # --- handlers -----------------------------------------------------------------------
    @staticmethod
    def _context(ctx: ServerRequestContext[Any, Any]) -> tuple[Principal, str | None]:
        request = ctx.request
        scope = getattr(request, "scope", None) or {}
        principal = scope.get(PRINCIPAL_KEY)
        if not isinstance(principal, Principal):
            raise MCPError(code=-32600, message="unauthenticated")
        return principal, scope.get(TARGET_KEY)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        principal, target = self._context(ctx)
        if target is not None:
            catalog = self.servers.catalogs.get(target)
            return types.ListToolsResult(tools=list(catalog.tools) if catalog else [])
        return types.ListToolsResult(tools=self.view.tools_for(principal).tools)

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        principal, target = self._context(ctx)
        if not principal.can("tools:execute"):
            return _error_result("this key may not call tools (needs 'tools:execute')")
        if target is not None:
            server, tool = target, params.name
        else:
            found = self.view.tools_for(principal).by_name.get(params.name)
            if found is not None:
                server, tool = found
            else:
                try:
                    server, tool = split_qualified(params.name)
                except Exception:
                    raise MCPError(
                        code=INVALID_PARAMS, message=f"unknown tool {params.name!r}"
                    ) from None
        runtime = self.servers.pool.get(server)
        if runtime is None or server not in self.view.visible_servers(principal):
            raise MCPError(code=INVALID_PARAMS, message=f"unknown tool {params.name!r}")
        try:
            result = await runtime.call_tool(
                tool, dict(params.arguments or {}), self.servers.call_timeout
            )
        except BackendError as exc:
            return _error_result(str(exc))
        secrets = runtime.spec.secret_values()
        if secrets:
            data = mask_result(result.model_dump(by_alias=True, exclude_none=True), secrets)
            result = types.CallToolResult.model_validate(data)
        return result


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _http_error(
    send: Send, status: int, code: str, message: str, extra: dict[str, str] | None = None
) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
