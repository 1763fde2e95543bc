"""Which servers and tools are known to be unavailable: fail open for listing.

A dead server never empties the catalog: its last known tools stay listed (the
catalog is stored, so they survive a restart too) and calls of them fail closed
(the breaker's or the backend's tool error). What the gateway knows of the
failure is shown where a client can be told: the tool's ``_meta`` under
:data:`UNAVAILABLE_META` in `tools/list` (both MCP paths and eras; a server's mark
on its resources and prompts in `resources/list` and `prompts/list`), a hit's
``unavailable`` in SEARCH_TOOLS and ``available: false`` in the REST catalog.

Two sources mark a server: its health (``unhealthy``: it cannot be reached or its
session dropped) and its circuit breaker (open, with the time it is tried again);
a tool's own breaker marks that tool only. Marks change on transitions only (a
breaker opening or closing, a health change), never per call; each change bumps
:attr:`Availability.version`, which the listing caches are keyed by, so a listing
stays a dictionary lookup.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

# Where a listed tool (and a refused call's result) says it is unavailable.
UNAVAILABLE_META = "io.mcpgw/unavailable"
HEALTH, BREAKER = "health", "breaker"


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Why a server or tool is unavailable and, when known, when it is tried again."""

    scope: Literal["server", "tool"]
    reason: str
    retry_at: float | None = None  # Unix seconds

    def meta(self) -> dict[str, Any]:
        """The JSON a client sees (``retryAt`` as an RFC 3339 UTC time)."""
        out: dict[str, Any] = {"scope": self.scope, "reason": self.reason}
        if self.retry_at is not None:
            at = datetime.fromtimestamp(self.retry_at, UTC)
            out["retryAt"] = at.isoformat(timespec="seconds").replace("+00:00", "Z")
        return out


def wall_clock(perf: float) -> float:
    """A ``time.perf_counter()`` instant (the breakers' clock) as Unix seconds."""
    return time.time() + (perf - time.perf_counter())


class Availability:
    """The marks of unavailable servers and tools, in this replica's memory (breakers
    and health are per replica too)."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self.version = 0  # bumped on every change: listing caches are keyed by it
        # Whether anything is marked: a plain attribute, read per listing (the common
        # case is nothing, and then a listing is not marked at all).
        self.marked = False
        # server → source (health, breaker) → its mark
        self._servers: dict[str, dict[str, Unavailable]] = {}
        # server → the backend's tool name → its breaker's mark
        self._tools: dict[str, dict[str, Unavailable]] = {}
        self._on_change = on_change

    def touches(self, server: str) -> bool:
        """Whether ``server`` or one of its tools is marked."""
        return server in self._servers or server in self._tools

    # --- reading -----------------------------------------------------------------------
    def of(self, server: str, tool: str) -> Unavailable | None:
        """The mark of a server's tool (by the backend's name): the server's own (its
        breaker's first: it says when it is tried again), else the tool's."""
        marks = self._servers.get(server)
        if marks:
            return marks.get(BREAKER) or marks.get(HEALTH)
        tools = self._tools.get(server)
        return tools.get(tool) if tools else None

    def of_server(self, server: str) -> Unavailable | None:
        """The server's own mark (what its resources and prompts are marked with)."""
        marks = self._servers.get(server) if self.marked else None
        return (marks.get(BREAKER) or marks.get(HEALTH)) if marks else None

    # --- writing -----------------------------------------------------------------------
    def mark_server(self, server: str, source: str, mark: Unavailable | None) -> None:
        """Set (or clear, with None) what ``source`` says of ``server``."""
        marks = self._servers.get(server, {})
        if marks.get(source) == mark:
            return
        changed = dict(marks)
        if mark is None:
            changed.pop(source, None)
        else:
            changed[source] = mark
        self._servers = _replaced(self._servers, server, changed)
        self._changed()

    def mark_tool(self, server: str, tool: str, mark: Unavailable | None) -> None:
        """Set (or clear) a tool's breaker mark (``tool``: the backend's name)."""
        tools = self._tools.get(server, {})
        if tools.get(tool) == mark:
            return
        changed = dict(tools)
        if mark is None:
            changed.pop(tool, None)
        else:
            changed[tool] = mark
        self._tools = _replaced(self._tools, server, changed)
        self._changed()

    def forget(self, server: str, source: str | None = None) -> None:
        """Clear a server's marks from ``source`` (its breakers' marks include its
        tools'), or all of them."""
        had = False
        if source in (None, BREAKER) and server in self._tools:
            self._tools = _replaced(self._tools, server, {})
            had = True
        marks = self._servers.get(server)
        if marks and (source is None or source in marks):
            kept = {} if source is None else {k: v for k, v in marks.items() if k != source}
            self._servers = _replaced(self._servers, server, kept)
            had = True
        if had:
            self._changed()

    def retain(self, servers: Iterable[str]) -> None:
        """Forget the marks of servers no longer registered (or enabled)."""
        keep = set(servers)
        for server in {*self._servers, *self._tools} - keep:
            self.forget(server)

    def _changed(self) -> None:
        self.version += 1
        self.marked = bool(self._servers or self._tools)
        if self._on_change is not None:
            self._on_change()


Listed = TypeVar("Listed", bound=BaseModel)


def with_mark(item: Listed, mark: Unavailable | None) -> Listed:
    """A listed tool, resource or prompt with its mark in ``_meta`` (a copy: the
    catalog's is shared); ``item`` itself when it has none."""
    if mark is None:
        return item
    meta = getattr(item, "meta", None) or {}
    return item.model_copy(update={"meta": {**meta, UNAVAILABLE_META: mark.meta()}})


def _replaced(
    table: dict[str, dict[str, Unavailable]], key: str, value: dict[str, Unavailable]
) -> dict[str, dict[str, Unavailable]]:
    """``table`` with ``key`` set to ``value`` (dropped when empty), as a new dict:
    readers on other tasks never see one half-changed."""
    out = {k: v for k, v in table.items() if k != key}
    if value:
        out[key] = value
    return out
