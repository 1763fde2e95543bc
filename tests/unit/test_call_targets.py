"""Name resolution of a tool call (gateway/servers/calls.py), which REST execute, the
SDK handlers, EXECUTE_TOOL and the fast path share: table-driven on the real
functions, with a stand-in for the one ServerService method they ask (which servers
this caller may use)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from gateway.errors import InvalidInput, NotFound
from gateway.servers.calls import find_target, qualified, resolve_target, split_name
from gateway.servers.transforming import ServerTransforms


class Servers:
    """`visible_runtime`: servers `a`, `b__x` and `t` are usable; `secret` is not. `t` has
    transforms: `echo` renamed `say`, tools starting with `h` hidden."""

    transforms: ClassVar[dict[str, ServerTransforms]] = {
        "t": ServerTransforms({"tools": {"echo": {"rename": "say"}}, "hide": ["h*"]})
    }

    def visible_runtime(self, principal: Any, name: str) -> Any:
        return f"runtime:{name}" if name in {"a", "b__x", "t"} else None


@pytest.mark.parametrize(
    ("name", "server", "want"),
    [
        ("a__echo", None, ("a", "echo")),
        ("a__echo__deep", None, ("a", "echo__deep")),  # the first separator splits
        ("echo", "a", ("a", "echo")),  # /mcp/servers/a: the server's own name
        ("x__y", "a", ("a", "x__y")),
        ("secret__echo", None, None),  # not this caller's
        ("echo", "secret", None),
        ("nounderscores", None, None),
        ("__x", None, None),
        ("x__", None, None),
        ("missing__echo", None, None),
        ("t__say", None, ("t", "say")),  # renamed: the agent's name, the backend's below
        ("say", "t", ("t", "say")),
        ("t__echo", None, None),  # the old name of a renamed tool
        ("t__hush", None, None),  # hidden
        ("t__other", None, ("t", "other")),
    ],
)
def test_find_target(name: str, server: str | None, want: tuple[str, str] | None) -> None:
    found = find_target(Servers(), None, name, server)  # type: ignore[arg-type]
    if want is None:
        assert found is None
    else:
        assert found is not None
        assert (found.server, found.tool, found.runtime) == (*want, f"runtime:{want[0]}")
        assert found.backend == ("echo" if want == ("t", "say") else want[1])


def test_resolve_says_why() -> None:
    with pytest.raises(InvalidInput) as bad:
        resolve_target(Servers(), None, "nounderscores")  # type: ignore[arg-type]
    assert bad.value.body()["errors"] == [
        {"field": "tool", "message": "expected '<server>__<tool>'"}
    ]
    with pytest.raises(NotFound) as missing:
        resolve_target(Servers(), None, "secret__echo")  # type: ignore[arg-type]
    assert missing.value.code == "tool_not_found"
    assert "'secret'" in missing.value.message
    with pytest.raises(NotFound) as hidden:
        resolve_target(Servers(), None, "t__hush")  # type: ignore[arg-type]
    assert hidden.value.code == "tool_not_found"
    assert hidden.value.message == "server 't' has no tool 'hush'"


def test_names_round_trip() -> None:
    assert split_name(qualified("a", "echo__deep")) == ("a", "echo__deep")
