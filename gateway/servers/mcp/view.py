"""What one caller sees through `/mcp`: the tools of the servers it may use, namespaced.

Built from the in-memory catalog, cached per (catalog version, visible servers),
so `tools/list` never touches the database (a call's name is resolved by
gateway/servers/calls.py). A server or tool known to be unavailable is listed all
the same, marked in its `_meta` (availability.py): a marked view is derived from the
plain one per availability version and shares its search index, so marks cost a
listing one more dictionary lookup and a change of them no index rebuild.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from mcp import types

from gateway.auth.principal import Principal
from gateway.mcp.search import ToolIndex
from gateway.policy.engine import CompiledPolicy
from gateway.servers.availability import Availability, with_mark
from gateway.servers.calls import qualified
from gateway.servers.runtimes.backend_tasks import task_support
from gateway.servers.service import ServerService, can_see

# A server's tool: (input schema, task support, asks for input before it is a task).
ToolEntry = tuple[dict[str, Any], str | None, bool]


@dataclass
class ToolView:
    """The aggregated tool list for one set of visible servers."""

    tools: list[types.Tool]
    schemas: dict[str, dict[str, Any]]  # qualified name → input schema
    # An admin's search keywords, one tuple a tool (aligned with ``tools``).
    keywords: list[tuple[str, ...]] = field(default_factory=list)
    # (server, the backend's tool name) of each tool (aligned with ``tools``).
    origins: list[tuple[str, str]] = field(default_factory=list)
    # Qualified name → its `unavailable` mark, of the tools marked (SEARCH_TOOLS hits).
    unavailable: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The unmarked view this one marks (its search index is this one's).
    base: ToolView | None = None
    _index: ToolIndex | None = None
    _building: asyncio.Future[ToolIndex] | None = None

    @property
    def index(self) -> ToolIndex:
        """The search index, built on first use and kept with the view."""
        if self.base is not None:
            return self.base.index
        if self._index is None:
            self._index = ToolIndex(self.tools, keywords=self.keywords or None)
        return self._index

    async def search_index(self) -> ToolIndex:
        """The search index, built on a worker thread on first use: analysing tens of
        thousands of tools takes seconds, which the event loop must not wait for.
        Searches that arrive meanwhile wait for the same build."""
        if self.base is not None:
            return await self.base.search_index()
        if self._index is None:
            if self._building is None:
                self._building = asyncio.ensure_future(
                    asyncio.to_thread(ToolIndex, self.tools, None, self.keywords or None)
                )
            self._index = await asyncio.shield(self._building)
        return self._index


class CatalogView:
    def __init__(self, servers: ServerService) -> None:
        self.servers = servers
        self._cache: dict[tuple[Any, ...], ToolView] = {}
        self._server_schemas: dict[tuple[int, str], dict[str, ToolEntry]] = {}
        self._server_tools: dict[tuple[int, str], list[types.Tool]] = {}
        # Marked views and lists: (the plain one's id, availability version) → both.
        self._marked: dict[tuple[int, int], tuple[ToolView, ToolView]] = {}
        self._marked_lists: dict[tuple[int, int], tuple[list[types.Tool], list[types.Tool]]] = {}

    def visible_servers(self, principal: Principal) -> list[str]:
        """Enabled servers whose tools this caller may see, in stable (name) order."""
        if not principal.can("tools:read"):
            return []
        return sorted(
            name
            for name, runtime in self.servers.pool.runtimes().items()
            if can_see(principal, runtime.spec.team_id)
        )

    def tools_for(self, principal: Principal) -> ToolView:
        # Asked on every call: keyed by what decides visibility (see can_see), so the
        # servers are not walked per request and callers alike share one view.
        policy = self.servers.policy_for(principal)
        key = (
            self.servers.catalog_version,
            self.servers.pool.generation,
            principal.can("tools:read"),
            principal.is_admin,
            principal.team_ids,
            # What the policy decides for this caller: callers alike share one view.
            policy.signature(principal) if policy is not None else None,
        )
        view = self._cache.get(key)
        if view is None:
            view = self._build(self.visible_servers(principal), policy, principal)
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = view
        marks = self.servers.availability
        return self._marked_view(view, marks) if marks.marked else view

    def _marked_view(self, view: ToolView, marks: Availability) -> ToolView:
        """``view`` with its unavailable tools marked (cached per availability version)."""
        key = (id(view), marks.version)
        cached = self._marked.get(key)
        if cached is not None and cached[0] is view:
            return cached[1]
        tools = list(view.tools)
        unavailable: dict[str, dict[str, Any]] = {}
        for i, (server, backend) in enumerate(view.origins):
            mark = marks.of(server, backend)
            if mark is not None:
                unavailable.setdefault(tools[i].name, mark.meta())
                tools[i] = with_mark(tools[i], mark)
        marked = ToolView(tools, view.schemas, view.keywords, view.origins, unavailable, view)
        if len(self._marked) > 256:
            self._marked.clear()
        self._marked[key] = (view, marked)
        return marked

    def _build(
        self,
        names: list[str],
        policy: CompiledPolicy | None = None,
        principal: Principal | None = None,
    ) -> ToolView:
        tools: list[types.Tool] = []
        schemas: dict[str, dict[str, Any]] = {}
        keywords: list[tuple[str, ...]] = []
        origins: list[tuple[str, str]] = []
        catalogs = self.servers.catalogs
        shown: Callable[[str], bool] = (
            (lambda name: True)
            if policy is None or principal is None
            else partial(policy.listable, principal, "tools/call")
        )
        for server in names:
            catalog = catalogs.get(server)
            if catalog is None:
                continue
            given = self.servers.keywords.get(server, {})
            # As agents see them: the server's transforms applied (transforming.py).
            transforms = self.servers.transforms.get(server)
            listed = catalog.tools if transforms is None else transforms.tools(catalog.tools)
            for tool in sorted(listed, key=lambda t: t.name):
                name = qualified(server, tool.name)
                if not shown(name):
                    continue  # the policy denies it: not shown
                schemas[name] = tool.input_schema
                tools.append(tool.model_copy(update={"name": name}))
                # Keywords are an admin's, by the backend's name of the tool.
                backend = tool.name if transforms is None else transforms.backend_name(tool.name)
                keywords.append(given.get(backend, ()))
                origins.append((server, backend))
        return ToolView(tools, schemas, keywords, origins)

    def server_tools(self, server: str) -> list[types.Tool]:
        """One server's tools as agents see them (its transforms applied), by name;
        cached per catalog version."""
        key = (self.servers.catalog_version, server)
        cached = self._server_tools.get(key)
        if cached is None:
            catalog = self.servers.catalogs.get(server)
            tools = list(catalog.tools) if catalog else []
            transforms = self.servers.transforms.get(server)
            cached = tools if transforms is None else transforms.tools(tools)
            if len(self._server_tools) > 1024:
                self._server_tools.clear()
            self._server_tools[key] = cached
        return cached

    def listed_tools(self, server: str) -> list[types.Tool]:
        """:meth:`server_tools` as `/mcp/servers/{server}` lists them: unavailable ones
        marked (a list replaced when the marks change; the plain one when it has none)."""
        tools = self.server_tools(server)
        marks = self.servers.availability
        if not marks.marked or not marks.touches(server):
            return tools
        key = (id(tools), marks.version)
        cached = self._marked_lists.get(key)
        if cached is None or cached[0] is not tools:
            transforms = self.servers.transforms.get(server)
            marked = []
            for tool in tools:
                backend = tool.name if transforms is None else transforms.backend_name(tool.name)
                mark = marks.of(server, backend)
                marked.append(with_mark(tool, mark))
            if len(self._marked_lists) > 1024:
                self._marked_lists.clear()
            cached = self._marked_lists[key] = (tools, marked)
        return cached[1]

    def server_entry(self, server: str, tool: str) -> ToolEntry | None:
        """One server's tool by the name agents call it (its own, unless a transform
        renamed it): its input schema as agents see it, whether it runs as an MCP task
        (``"optional"``/``"required"``, else None) and whether it asks for input before
        it does; cached per catalog version: one dict lookup per call."""
        key = (self.servers.catalog_version, server)
        table = self._server_schemas.get(key)
        if table is None:
            tools = self.server_tools(server)
            table = {t.name: (t.input_schema, *task_support(t)) for t in tools}
            if len(self._server_schemas) > 1024:
                self._server_schemas.clear()
            self._server_schemas[key] = table
        return table.get(tool)

    def task_support(self, server: str, tool: str) -> tuple[str | None, bool]:
        """Whether a server's tool runs as an MCP task (see :func:`task_support`)."""
        entry = self.server_entry(server, tool)
        return (entry[1], entry[2]) if entry is not None else (None, False)

    def server_schema(self, server: str, tool: str) -> dict[str, Any] | None:
        """One server's tool schema by the name agents call it (cached per catalog
        version)."""
        entry = self.server_entry(server, tool)
        return entry[0] if entry is not None else None
