"""`tools/list` answered from serialised pages.

On the SDK path a `tools/list` page is built, validated against the protocol
surface, dumped and JSON-encoded on every request: about 10 ms for a 500-tool
page here, nearly all of it pydantic and `json`. The page only changes when a
catalog, the caller's view or a pillar's tools do, and each of those is an object
that is replaced on change (see :meth:`GatewayHandlers.tools_page`). So the page
is serialised once, through the SDK's own result serialiser so the bytes are
what the SDK path would send, and kept under the identity of what it was made
of; a request then costs a dictionary lookup and one copy of the bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from mcp.shared.exceptions import MCPError
from mcp_types.methods import serialize_server_result
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.types import Scope, Send

from gateway.auth.principal import Principal

if TYPE_CHECKING:
    from gateway.mcp.handlers import GatewayHandlers

SERVER_INFO_META_KEY = "io.modelcontextprotocol/serverInfo"
MAX_PAGES = 512  # distinct cached pages (caller views, cursors, eras)


class ToolsListCache:
    """Serialised `tools/list` results by (what the page is made of, cursor, era)."""

    def __init__(self, handlers: GatewayHandlers, server_info: dict[str, Any]) -> None:
        self.handlers = handlers
        self.server_info = server_info
        # key → (the objects the page was made of, kept so their ids stay theirs; bytes)
        self._pages: dict[tuple[Any, ...], tuple[tuple[object, ...], bytes]] = {}

    async def result(
        self, principal: Principal, target: str | None, cursor: str | None, version: str
    ) -> bytes | None:
        """The JSON of the `result` member; None when the SDK path should answer
        (a bad cursor: it words the error)."""
        try:
            page, parts = await self.handlers.tools_page(principal, target, cursor)
        except MCPError:
            return None
        key = (
            tuple(id(part) for part in parts),
            cursor,
            version,
            self.handlers.servers.catalog_version,
        )
        cached = self._pages.get(key)
        if cached is not None and all(a is b for a, b in zip(cached[0], parts, strict=True)):
            return cached[1]
        dumped = serialize_server_result(
            "tools/list",
            version,
            page.model_dump(by_alias=True, mode="json", exclude_none=True),
        )
        if version in MODERN_PROTOCOL_VERSIONS:
            dumped.setdefault("resultType", "complete")
            dumped["_meta"] = {
                **(dumped.get("_meta") or {}),
                SERVER_INFO_META_KEY: self.server_info,
            }
        body = orjson.dumps(dumped)
        if len(self._pages) >= MAX_PAGES:
            self._pages.clear()
        self._pages[key] = (parts, body)
        return body

    async def serve(
        self,
        scope: Scope,
        send: Send,
        principal: Principal,
        target: str | None,
        cursor: str | None,
        version: str,
        request_id: str | int,
        session_id: str | None,
    ) -> bool:
        """Answer a checked `tools/list` POST; False: nothing sent, take the SDK path."""
        result = await self.result(principal, target, cursor, version)
        if result is None:
            return False
        body = b'{"jsonrpc":"2.0","id":%b,"result":%b}' % (orjson.dumps(request_id), result)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"mcpgw-route", b"cached"),
        ]
        if session_id is not None:
            headers.append((b"mcp-session-id", session_id.encode("latin-1")))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        scope.setdefault("state", {})["route"] = "cached"
        return True
