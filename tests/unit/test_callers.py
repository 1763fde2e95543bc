"""Who is asked what a shared backend session asks outside any request (relay.py).

The rule decides which agent sees a backend's roots, sampling and elicitation requests,
so a wrong answer leaks one agent's question to another: table-driven here, on the
real :class:`Callers` with stand-in callers (the integration tests in
tests/integration/mcp/test_fastpath_outside.py drive it end to end).
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp import types

from gateway.servers.runtimes.relay import NO_CLIENT, Callers


class Agent:
    """A caller of either path: an SDK-path relay and a fast call in one stand-in."""

    def __init__(self, name: str, askable: bool = True) -> None:
        self.name, self.askable = name, askable

    async def request(self, method: str, params: Any) -> Any:
        return types.ListRootsResult(roots=[types.Root(uri=f"file:///{self.name}")])

    async def ask_outside(self, method: str, params: Any) -> Any:
        return await self.request(method, params)


def _callers(relays: list[Agent], calls: list[Agent]) -> Callers:
    callers = Callers()
    for relay in relays:
        callers._relays[id(relay)] = relay  # as serving() holds them
    for call in calls:
        callers.add(call)
    return callers


async def _asked(callers: Callers) -> str:
    result = await callers.roots(None)
    if isinstance(result, types.ErrorData):
        assert result.code == NO_CLIENT
        return f"refused: {result.message}"
    return str(result.roots[0].uri).removeprefix("file:///")


@pytest.mark.parametrize(
    ("relays", "calls", "asked"),
    [
        ([], [Agent("a")], "a"),
        ([Agent("a")], [], "a"),
        ([], [], "refused: roots is not available: no client connection to relay it to"),
        ([Agent("a")], [Agent("b")], "refused: roots is not available: 2 requests"),
        ([], [Agent("a"), Agent("b")], "refused: roots is not available: 2 requests"),
        # parked for its agent's retry: the other one asks
        ([], [Agent("a", askable=False), Agent("b")], "b"),
        ([Agent("a", askable=False)], [Agent("b")], "b"),
        ([Agent("a")], [Agent("b", askable=False)], "a"),
        # the parked call alone asks again: its retry follows it
        ([], [Agent("a", askable=False)], "a"),
        ([Agent("a", askable=False)], [], "a"),
        # two parked, none open: cannot be told apart
        ([], [Agent("a", askable=False), Agent("b", askable=False)], "refused: roots is not"),
        # two open beside a parked one: still refused
        ([Agent("p", askable=False)], [Agent("a"), Agent("b")], "refused: roots is not"),
    ],
)
async def test_who_is_asked(relays: list[Agent], calls: list[Agent], asked: str) -> None:
    assert (await _asked(_callers(relays, calls))).startswith(asked)
