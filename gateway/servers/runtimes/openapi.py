"""An MCP server made from an OpenAPI 3.x document with FastMCP's OpenAPI support: each
operation becomes a tool that makes the HTTP request it describes.

Used by the ``generated`` runtime (config ``openapi``, written by the server generator
of #19 and approved by a person) and by that generator, to show the tools a document
yields and to test-call them. The annotations FastMCP leaves unset are set from the
HTTP method: ``GET``/``HEAD`` are read-only, ``DELETE`` is destructive, and ``GET``,
``HEAD``, ``PUT`` and ``DELETE`` are idempotent. The API's base URL goes through the
SSRF guard (each host vetted on first connect, connections pinned) unless private
URLs are allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx2
from mcp.types import ToolAnnotations

from gateway.pinned_http import PinnedTransport2
from gateway.ssrf import HostPins

READ_ONLY = frozenset({"GET", "HEAD"})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
# One API call; the gateway's own call timeout bounds a tool call as a whole.
HTTP_TIMEOUT = 60.0


def _annotate(route: Any, component: Any) -> None:
    """FastMCP's ``mcp_component_fn``: annotations from the operation's method."""
    method = str(route.method).upper()
    title = getattr(route, "summary", None) or None
    component.annotations = ToolAnnotations(
        title=title,
        read_only_hint=method in READ_ONLY,
        destructive_hint=method == "DELETE",
        idempotent_hint=method in IDEMPOTENT,
        open_world_hint=True,
    )


def api_client(
    base_url: str, headers: dict[str, str] | None = None, *, allow_private_urls: bool
) -> httpx2.AsyncClient:
    """The HTTP client a generated server's tools call the API with."""
    transport = None if allow_private_urls else PinnedTransport2(HostPins())
    return httpx2.AsyncClient(
        base_url=base_url, headers=headers or {}, transport=transport, timeout=HTTP_TIMEOUT
    )


def build_openapi_server(
    document: dict[str, Any],
    *,
    name: str,
    client: httpx2.AsyncClient,
    include: Iterable[str] | None = None,
) -> Any:
    """A FastMCP server with one tool per operation of ``document`` (an OpenAPI 3.x
    object); only the tools named in ``include`` are listed and callable when given.
    ValueError when FastMCP cannot read the document."""
    from fastmcp import FastMCP

    server = FastMCP.from_openapi(
        document,
        client=client,
        name=name,
        mcp_component_fn=_annotate,
        # Real APIs stray from their own response schemas; a tool should still answer.
        validate_output=False,
    )
    if include is not None:
        server.enable(names=set(include), components={"tool"}, only=True)
    return server


async def describe_tools(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The tools ``document`` yields: name, description, method, path, annotations and
    input schema (no request is made)."""
    async with httpx2.AsyncClient(base_url="http://api.invalid") as client:
        server = build_openapi_server(document, name="draft", client=client)
        tools = await server.list_tools()
    described = []
    for tool in tools:
        route = tool._route  # the operation (FastMCP's OpenAPITool keeps it)
        hints = tool.annotations
        described.append(
            {
                "name": tool.name,
                "description": tool.description or "",
                "method": str(route.method).upper(),
                "path": route.path,
                "read_only": bool(hints and hints.read_only_hint),
                "destructive": bool(hints and hints.destructive_hint),
                "input_schema": tool.parameters,
                "include": True,
            }
        )
    return described
