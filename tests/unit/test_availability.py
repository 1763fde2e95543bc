"""Availability marks (gateway/servers/availability.py) and how listings carry them
(gateway/servers/mcp/view.py, SEARCH_TOOLS), in process: a stand-in for the server
service holds a catalog, transforms and marks (the integration tests in
tests/integration/resilience/test_fail_open.py run the real thing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from mcp import types

from gateway.auth.principal import Principal
from gateway.mcp.meta import search_result
from gateway.servers.availability import (
    BREAKER,
    HEALTH,
    UNAVAILABLE_META,
    Availability,
    Unavailable,
)
from gateway.servers.mcp.view import CatalogView
from gateway.servers.runtimes.base import Catalog
from gateway.servers.transforming import ServerTransforms

ADMIN = Principal("u", "u@x", "u", "admin", "k", ("*",))
DOWN = Unavailable("server", "connection refused")
OPEN = Unavailable("server", "circuit breaker open", retry_at=1_800_000_000.0)


def test_marks_change_on_transitions_only() -> None:
    changes: list[int] = []
    marks = Availability(lambda: changes.append(1))
    assert not marks.marked and marks.of("s", "t") is None
    marks.mark_server("s", HEALTH, DOWN)
    marks.mark_server("s", HEALTH, Unavailable("server", "connection refused"))  # the same
    assert len(changes) == 1 and marks.version == 1 and marks.touches("s")
    marks.mark_server("s", BREAKER, OPEN)
    assert marks.of("s", "any") == OPEN  # the breaker's says when it is tried again
    marks.forget("s", BREAKER)
    assert marks.of("s", "any") == DOWN
    marks.mark_server("s", HEALTH, None)
    assert not marks.marked and not marks.touches("s") and len(changes) == 4


def test_a_tools_mark_is_its_own_and_the_servers_covers_every_tool() -> None:
    marks = Availability()
    tool = Unavailable("tool", "circuit breaker open")
    marks.mark_tool("s", "put", tool)
    assert marks.of("s", "put") == tool and marks.of("s", "read") is None
    marks.mark_server("s", HEALTH, DOWN)
    assert marks.of("s", "read") == DOWN == marks.of("s", "put")
    marks.forget("s", BREAKER)  # a breaker's marks include its tools'
    marks.mark_server("s", HEALTH, None)
    assert not marks.marked
    marks.mark_tool("gone", "t", tool)
    marks.mark_server("kept", HEALTH, DOWN)
    marks.retain(["kept"])
    assert marks.of("gone", "t") is None and marks.of("kept", "t") == DOWN


def test_the_mark_clients_see() -> None:
    assert OPEN.meta() == {
        "scope": "server",
        "reason": "circuit breaker open",
        "retryAt": "2027-01-15T08:00:00Z",
    }
    assert DOWN.meta() == {"scope": "server", "reason": "connection refused"}


def _tool(name: str) -> types.Tool:
    return types.Tool(name=name, description=f"{name} things", input_schema={"type": "object"})


@dataclass
class _Servers:
    """What the view reads of the server service."""

    catalogs: dict[str, Catalog]
    transforms: dict[str, ServerTransforms] = field(default_factory=dict)
    availability: Availability = field(default_factory=Availability)
    keywords: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    catalog_version: int = 1

    def __post_init__(self) -> None:
        runtimes = {
            name: SimpleNamespace(spec=SimpleNamespace(team_id=None)) for name in self.catalogs
        }
        self.pool = SimpleNamespace(runtimes=lambda: runtimes, generation=1)

    def policy_for(self, principal: Principal) -> Any:
        return None


def _view() -> tuple[CatalogView, _Servers]:
    servers = _Servers(
        {
            "a": Catalog(tools=[_tool("put"), _tool("read")]),
            "b": Catalog(tools=[_tool("echo")]),
        },
        transforms={"a": ServerTransforms({"tools": {"put": {"rename": "store"}}})},
    )
    return CatalogView(servers), servers  # type: ignore[arg-type]


def _marks_of(tools: list[types.Tool]) -> dict[str, Any]:
    return {t.name: (t.meta or {}).get(UNAVAILABLE_META) for t in tools}


def test_without_marks_a_listing_is_the_plain_view() -> None:
    view, _ = _view()
    plain = view.tools_for(ADMIN)
    assert view.tools_for(ADMIN) is plain and plain.base is None and not plain.unavailable
    assert view.listed_tools("a") is view.server_tools("a")


def test_marked_views_list_every_tool_and_share_the_search_index() -> None:
    view, servers = _view()
    plain = view.tools_for(ADMIN)
    servers.availability.mark_tool("a", "put", Unavailable("tool", "breaker open", 1e9))
    marked = view.tools_for(ADMIN)
    assert view.tools_for(ADMIN) is marked  # one dictionary lookup per listing
    assert [t.name for t in marked.tools] == [t.name for t in plain.tools]
    # By the backend's name: the renamed tool is the one marked.
    assert _marks_of(marked.tools) == {
        "a__read": None,
        "a__store": {"scope": "tool", "reason": "breaker open", "retryAt": "2001-09-09T01:46:40Z"},
        "b__echo": None,
    }
    assert _marks_of(plain.tools)["a__store"] is None  # the catalog's tools are untouched
    assert marked.index is plain.index  # a change of marks rebuilds no search index
    assert set(marked.unavailable) == {"a__store"}
    # One server's endpoint: its own names, marked alike; the other server's untouched.
    assert _marks_of(view.listed_tools("a"))["store"]["scope"] == "tool"
    assert view.listed_tools("b") is view.server_tools("b")
    # Marks cleared: the plain view again.
    servers.availability.forget("a")
    assert view.tools_for(ADMIN) is plain


def test_search_hits_say_they_are_unavailable() -> None:
    view, servers = _view()
    servers.availability.mark_server("b", HEALTH, DOWN)
    marked = view.tools_for(ADMIN)
    result = search_result(marked.index, {"query": "echo things"}, unavailable=marked.unavailable)
    hits = {h["name"]: h for h in (result.structured_content or {})["tools"]}
    assert hits["b__echo"]["unavailable"] == DOWN.meta()
    assert all("unavailable" not in h for name, h in hits.items() if name != "b__echo")
