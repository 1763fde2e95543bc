"""Which `tools/call` the fast path takes (FastPath._route), table-driven.

A wrong "not eligible" costs no correctness, only speed (the SDK path answers), so
nothing else would catch it: each row names a call and whether it gets a direct
route. The real FastPath and Principal; stand-ins for the three things `_route` asks
of pillar 1 (who may use which server, which tools the catalog lists, the runtime's
route for the agent's era).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from gateway.auth.principal import Principal
from gateway.servers.calls import find_target
from gateway.servers.mcp.fastpath import FastPath

ROUTE = object()  # a runtime's direct route (its identity is what the test checks)


class Runtime:
    def __init__(self, team: str | None = None, http: bool = True, eras: str = "both") -> None:
        self.team, self.http, self.eras = team, http, eras

    def direct_route(self, *, modern: bool = True, affinity: str | None = None) -> Any:
        if not self.http:
            return None  # stdio, docker, legacy SSE: the SDK path
        if self.eras != "both" and (self.eras == "2026") != modern:
            return None  # no session of the agent's era
        return ROUTE


RUNTIMES = {
    "http": Runtime(),
    "stdio": Runtime(http=False),
    "team": Runtime(team="t1"),
    "only2026": Runtime(eras="2026"),
}
CATALOG = {("http", "echo"), ("stdio", "echo"), ("team", "echo"), ("only2026", "echo")}


class Servers:
    transforms: ClassVar[dict[str, Any]] = {}  # no server here has tool transforms

    def visible_runtime(self, principal: Principal, name: str) -> Runtime | None:
        runtime = RUNTIMES.get(name)
        if runtime is None or not (
            runtime.team is None or principal.is_admin or runtime.team in principal.team_ids
        ):
            return None
        return runtime


# Tools the backend runs as MCP tasks: servers/mcp/tasks.py decides on the SDK path.
TASK_TOOLS = {("http", "crunch"): "optional", ("http", "must"): "required"}


class View:
    def server_entry(
        self, server: str, tool: str
    ) -> tuple[dict[str, Any], str | None, bool] | None:
        if (server, tool) in TASK_TOOLS:
            return {"type": "object"}, TASK_TOOLS[(server, tool)], False
        return ({"type": "object"}, None, False) if (server, tool) in CATALOG else None


def _principal(role: str = "developer", scopes: tuple[str, ...] = ("*",)) -> Principal:
    return Principal("u", "u@x", "u", role, "k", scopes)


def _fast() -> FastPath:
    return FastPath(
        Servers(),  # type: ignore[arg-type]
        View(),  # type: ignore[arg-type]
        allowed_hosts=["*"],
        allowed_origins=["*"],
        known_session=lambda _: True,
    )


DEV = _principal()
VIEWER = _principal("viewer")
READ_ONLY_KEY = _principal(scopes=("tools:read",))


@pytest.mark.parametrize(
    ("principal", "target", "name", "modern", "eligible"),
    [
        (DEV, None, "http__echo", True, True),
        (DEV, None, "http__echo", False, True),
        (DEV, "http", "echo", True, True),  # /mcp/servers/http
        (DEV, None, "http__nope", True, False),  # not in the catalog: the SDK path words it
        (DEV, "http", "nope", True, False),
        (DEV, None, "stdio__echo", True, False),  # no HTTP route to it
        (DEV, None, "team__echo", True, False),  # another team's server
        (DEV, None, "only2026__echo", True, True),
        (DEV, None, "only2026__echo", False, False),  # no session of the 2025 era
        (DEV, None, "missing__echo", True, False),
        (DEV, None, "noseparator", True, False),
        (DEV, None, "SEARCH_TOOLS", True, False),  # meta-tools are the front's
        (DEV, None, "EXECUTE_TOOL", True, False),
        (DEV, None, "http__crunch", True, False),  # may run as a task: the SDK path decides
        (DEV, None, "http__crunch", False, False),
        (DEV, "http", "must", True, False),
        # Permission is the pipeline's authorize stage, on this path as on every other
        # (tests/integration/mcp/test_fastpath.py: the refusal is answered here).
        (VIEWER, None, "http__echo", True, True),
        (READ_ONLY_KEY, None, "http__echo", True, True),
    ],
)
def test_route(
    principal: Principal, target: str | None, name: str, modern: bool, eligible: bool
) -> None:
    fast = _fast()
    routed = fast._route(principal, target, name, modern, None)
    assert (routed is not None) == eligible, routed
    if routed is not None:
        called, route = routed
        assert route is ROUTE
        assert (called.server, called.tool) == (
            (target, name) if target else tuple(name.split("__", 1))
        )


def test_an_admin_reaches_every_teams_server() -> None:
    fast = _fast()
    assert fast._route(_principal("admin"), None, "team__echo", True, None) is not None


def _scope(session: bool) -> dict[str, Any]:
    headers = [
        (b"content-type", b"application/json"),
        (b"accept", b"application/json, text/event-stream"),
        (b"host", b"gw.test"),
        (b"mcp-protocol-version", b"2025-11-25"),
    ]
    return {"headers": [*headers, (b"mcp-session-id", b"s1")] if session else headers}


@pytest.mark.parametrize(
    ("params", "eligible"),
    [
        ({"name": "http__echo", "arguments": {}}, True),
        # A 2025-11-25 task-augmented call, of any tool: servers/mcp/tasks.py serves it.
        ({"name": "http__echo", "arguments": {}, "task": {"ttl": 1000}}, False),
        ({"name": "http__echo", "arguments": {}, "task": {}}, False),
    ],
)
def test_task_augmented_calls_take_the_sdk_path(params: dict[str, Any], eligible: bool) -> None:
    message = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}
    fast = _fast()
    fast.allowed_hosts = ["gw.test"]
    found = fast._request(_scope(session=True), message)  # type: ignore[arg-type]
    assert (found is not None) == eligible, found


def _modern_scope(name: bytes, *extra: tuple[bytes, bytes]) -> dict[str, Any]:
    headers = [
        (b"content-type", b"application/json"),
        (b"accept", b"application/json, text/event-stream"),
        (b"host", b"gw.test"),
        (b"mcp-protocol-version", b"2026-07-28"),
        (b"mcp-method", b"tools/call"),
        (b"mcp-name", name),
        *extra,
    ]
    return {"headers": headers}


@pytest.mark.parametrize(
    ("tool", "header", "eligible"),
    [
        ("http__echo", b"http__echo", True),
        ("http__echo", b"http__other", False),
        # The SDK's encoded form of a name that needs it, and of one that does not.
        ("http__\u00e9cho", b"=?base64?aHR0cF9fw6ljaG8=?=", True),
        ("http__echo", b"=?base64?aHR0cF9fZWNobw==?=", True),
        # A name that looks encoded is compared decoded, as the SDK does.
        ("=?base64?eA==?=", b"=?base64?eA==?=", False),
        ("http__echo", b"=?base64?not base64?=", False),
    ],
)
def test_a_2026_call_names_its_tool_in_a_header_as_the_sdk_reads_it(
    tool: str, header: bytes, eligible: bool
) -> None:
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}
    params = {"name": tool, "arguments": {}, "_meta": meta}
    message = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}
    fast = _fast()
    fast.allowed_hosts = ["gw.test"]
    found = fast._request(_modern_scope(header), message)  # type: ignore[arg-type]
    assert (found is not None) == eligible, found


def test_mcp_param_headers_are_kept_for_the_backend_and_absent_ones_cost_nothing() -> None:
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}
    params = {"name": "http__echo", "arguments": {"region": "eu"}, "_meta": meta}
    message = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}
    fast = _fast()
    fast.allowed_hosts = ["gw.test"]
    plain = fast._request(_modern_scope(b"http__echo"), message)  # type: ignore[arg-type]
    assert plain is not None and plain.param_headers == {}  # type: ignore[union-attr]
    scope = _modern_scope(b"http__echo", (b"mcp-param-region", b"eu"))
    found = fast._request(scope, message)  # type: ignore[arg-type]
    assert found is not None and found.param_headers == {"mcp-param-region": "eu"}  # type: ignore[union-attr]


def test_a_target_is_reused_while_its_runtime_is_the_one_resolved() -> None:
    """Targets are immutable, so the one resolved last for a name is handed out again;
    a server registered anew (another runtime) gets a target of its own."""
    servers = Servers()
    first = find_target(servers, DEV, "http__echo")  # type: ignore[arg-type]
    assert first is not None and find_target(servers, DEV, "http__echo") is first  # type: ignore[arg-type]
    old = RUNTIMES["http"]
    RUNTIMES["http"] = Runtime()
    try:
        again = find_target(servers, DEV, "http__echo")  # type: ignore[arg-type]
        assert again is not None and again is not first and again.runtime is RUNTIMES["http"]
    finally:
        RUNTIMES["http"] = old
    # Visibility is still asked each time.
    assert find_target(servers, DEV, "team__echo") is None  # type: ignore[arg-type]
