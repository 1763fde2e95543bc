"""A fast MCP backend for the benchmarks: raw ASGI, JSON-RPC over Streamable HTTP.

An SDK or FastMCP server tops out near a thousand calls per second on this class
of machine, which would measure the backend rather than the gateway. This one
answers `initialize` (2025-11-25, with a session id), `tools/list` and `tools/call`
(`echo {text}`) with plain JSON and nothing else, so it costs a few tens of
microseconds per call. Run: ``python -m bench.backend PORT [TOOLS]``; with TOOLS,
it also lists that many synthetic tools (realistic names, descriptions and
parameters, the same every run) for the catalog benchmarks.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

import orjson

PROTOCOL = "2025-11-25"
ECHO = {
    "name": "echo",
    "description": "Return the text it is given.",
    "inputSchema": {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    },
}
_JSON = [(b"content-type", b"application/json")]
TOOLS = [ECHO]

_VERBS = [
    "get",
    "list",
    "create",
    "update",
    "delete",
    "search",
    "export",
    "import",
    "sync",
    "archive",
    "restore",
]
_NOUNS = [
    "invoice",
    "customer",
    "order",
    "ticket",
    "issue",
    "repository",
    "branch",
    "commit",
    "release",
    "deployment",
    "metric",
    "alert",
    "dashboard",
    "user",
    "team",
    "project",
    "document",
    "calendar",
    "event",
    "message",
    "channel",
    "file",
    "folder",
    "image",
    "report",
    "payment",
    "subscription",
    "product",
    "inventory",
    "shipment",
]
_DOMAINS = [
    "billing",
    "crm",
    "support",
    "git",
    "ci",
    "observability",
    "identity",
    "docs",
    "chat",
    "storage",
]
_PARAMS = [
    "id",
    "name",
    "query",
    "limit",
    "cursor",
    "since",
    "until",
    "status",
    "owner",
    "tags",
    "format",
    "region",
    "priority",
    "assignee",
    "label",
    "path",
    "branch",
    "environment",
    "currency",
    "amount",
    "email",
]


def synthetic_tools(count: int) -> list[dict[str, Any]]:
    """``count`` distinct tools shaped like real ones (deterministic)."""
    tools = []
    for i in range(count):
        verb = _VERBS[i % len(_VERBS)]
        noun = _NOUNS[(i // len(_VERBS)) % len(_NOUNS)]
        domain = _DOMAINS[(i // (len(_VERBS) * len(_NOUNS))) % len(_DOMAINS)]
        params = [_PARAMS[(i * 7 + k * 3) % len(_PARAMS)] for k in range(2 + i % 3)]
        properties = {
            p: {"type": "string", "description": f"The {p} of the {noun} to {verb}."}
            for p in params
        }
        tools.append(
            {
                "name": f"{domain}_{verb}_{noun}_{i}",
                "description": f"{verb.capitalize()} a {noun} in the {domain} system. "
                f"Use it when the user asks to {verb} {noun}s; returns the {noun} as JSON.",
                "inputSchema": {
                    "type": "object",
                    "properties": properties,
                    "required": params[:1],
                },
            }
        )
    return tools


def _result(request_id: Any, result: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "result": result})


def _error(request_id: Any, code: int, message: str) -> bytes:
    return orjson.dumps(
        {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    )


def handle(message: dict[str, Any]) -> tuple[bytes | None, list[tuple[bytes, bytes]]]:
    """The answer to one message (None for a notification) and extra headers."""
    method = message.get("method")
    request_id = message.get("id")
    if request_id is None:
        return None, []
    if method == "tools/call":
        text = (message.get("params") or {}).get("arguments", {}).get("text", "")
        return _result(request_id, {"content": [{"type": "text", "text": text}]}), []
    if method == "initialize":
        session = uuid.uuid4().hex.encode()
        result = {
            "protocolVersion": PROTOCOL,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "bench-backend", "version": "1"},
        }
        return _result(request_id, result), [(b"mcp-session-id", session)]
    if method == "tools/list":
        return _result(request_id, {"tools": TOOLS}), []
    if method == "ping":
        return _result(request_id, {}), []
    return _error(request_id, -32601, f"method not found: {method}"), []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["method"] != "POST":
        await send({"type": "http.response.start", "status": 405, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer, extra = _error(None, -32700, "parse error"), []
    else:
        answer, extra = handle(message)
    if answer is None:
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [*_JSON, (b"content-length", str(len(answer)).encode()), *extra]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


if __name__ == "__main__":
    import uvicorn

    if len(sys.argv) > 2:
        TOOLS.extend(synthetic_tools(max(0, int(sys.argv[2]) - 1)))  # echo counts too
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
