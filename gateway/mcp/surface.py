"""What a pillar adds to ``/mcp`` next to the aggregated servers: one surface type.

The skills pillar (``LOAD_SKILL``, ``skill://`` resources, the Skills extension) and
the sandboxes pillar (``SANDBOX_EXEC`` …) each hand the protocol front one
:class:`Surface`. The front merges every surface's tools, resources, resource
templates and prompts into its lists (tools on the first page of ``tools/list``; in
``search_execute`` mode only those that ask to be, the others are found by
``SEARCH_TOOLS``), and routes a call, a read or a prompt to the surface that owns the
name or URI (directly or through ``EXECUTE_TOOL``). Surfaces are served on the
aggregated endpoint only, never on one server's.

:class:`SurfaceDefaults` gives a pillar "nothing of that kind" for what it does not
serve, so it implements only what it has.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mcp import types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INVALID_PARAMS
from starlette.types import Receive, Scope, Send

from gateway.auth.principal import Principal
from gateway.mcp.search import ToolIndex

if TYPE_CHECKING:
    from gateway.mcp.fastlist import ToolsListCache

Ctx = ServerRequestContext[Any, Any]
# The caller of an MCP request, as the front authenticated it.
CallerOf = Callable[[Ctx], Principal]


class Surface(Protocol):
    """A pillar's agent-facing MCP surface: tools, resources, templates and prompts,
    listed per caller and served by name or URI."""

    @property
    def generation(self) -> int:
        """Changes whenever anything this surface lists may have changed (cursors and
        list caches are keyed by it)."""

    @property
    def listed_in_search_mode(self) -> bool:
        """Its tools are listed in `search_execute` mode too (skills: their catalog is
        the point); otherwise found with SEARCH_TOOLS and run through EXECUTE_TOOL."""

    def handles_tool(self, name: str) -> bool:
        """Whether ``name`` is one of this surface's tools (cheap: checked per call)."""

    async def tools(self, principal: Principal) -> list[types.Tool]:
        """The tools ``principal`` may see (empty when none)."""

    async def call_tool(
        self,
        principal: Principal,
        name: str,
        arguments: dict[str, Any],
        session_key: str | None = None,
    ) -> types.CallToolResult:
        """Run the tool; bad input or a refusal is a tool error (``is_error``), not a
        protocol error. ``session_key`` names the agent's session, for affinity."""

    def owns_uri(self, uri: str) -> bool:
        """Whether ``uri`` is one of this surface's resources (its scheme)."""

    async def resources(self, principal: Principal) -> list[types.Resource]:
        """The resources ``principal`` may list."""

    async def templates(self, principal: Principal) -> list[types.ResourceTemplate]:
        """The resource templates ``principal`` may list."""

    async def read_resource(self, principal: Principal, uri: str) -> types.ReadResourceResult:
        """Read one of its resources; an MCP error (-32602) for one it does not serve."""

    def handles_prompt(self, name: str) -> bool:
        """Whether ``name`` is one of this surface's prompts."""

    async def prompts(self, principal: Principal) -> list[types.Prompt]:
        """The prompts ``principal`` may list."""

    async def get_prompt(
        self, principal: Principal, name: str, arguments: dict[str, str] | None
    ) -> types.GetPromptResult:
        """Render one of its prompts."""

    def add_change_listener(self, listener: Callable[[], Awaitable[None]]) -> None:
        """Call ``listener`` after its lists change (the front tells agents)."""

    def install(self, server: Server[Any], caller: CallerOf) -> None:
        """Add methods of its own (an extension's) to the front's SDK server for `/mcp`."""


class SurfaceDefaults:
    """A surface's "none of that kind": inherit it and implement what the pillar serves."""

    generation = 0
    listed_in_search_mode = False

    def handles_tool(self, name: str) -> bool:
        return False

    async def tools(self, principal: Principal) -> list[types.Tool]:
        return []

    async def call_tool(
        self,
        principal: Principal,
        name: str,
        arguments: dict[str, Any],
        session_key: str | None = None,
    ) -> types.CallToolResult:
        raise MCPError(INVALID_PARAMS, f"unknown tool {name!r}")

    def owns_uri(self, uri: str) -> bool:
        return False

    async def resources(self, principal: Principal) -> list[types.Resource]:
        return []

    async def templates(self, principal: Principal) -> list[types.ResourceTemplate]:
        return []

    async def read_resource(self, principal: Principal, uri: str) -> types.ReadResourceResult:
        raise MCPError(INVALID_PARAMS, f"no resource is served at {uri}")

    def handles_prompt(self, name: str) -> bool:
        return False

    async def prompts(self, principal: Principal) -> list[types.Prompt]:
        return []

    async def get_prompt(
        self, principal: Principal, name: str, arguments: dict[str, str] | None
    ) -> types.GetPromptResult:
        raise MCPError(INVALID_PARAMS, f"unknown prompt {name!r}")

    def add_change_listener(self, listener: Callable[[], Awaitable[None]]) -> None:
        """Nothing changes that agents need telling of."""

    def install(self, server: Server[Any], caller: CallerOf) -> None:
        """No methods of its own."""


class ToolList(Protocol):
    """A caller's tools as the front lists and searches them."""

    @property
    def tools(self) -> list[types.Tool]:
        """Every tool, namespaced, in a stable order."""

    @property
    def unavailable(self) -> Mapping[str, Any]:
        """Name → why that tool is unavailable now (listed all the same, marked)."""

    @property
    def index(self) -> ToolIndex:
        """SEARCH_TOOLS' index over them."""

    async def search_index(self) -> ToolIndex:
        """The same index, built off the event loop when it is not built yet."""


class FastLane(Protocol):
    """Serves some `/mcp` POSTs without the SDK (pillar 1's fast path)."""

    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        message: Any,
        principal: Principal,
        target: str | None,
    ) -> bool:
        """Serve the POST if eligible; False: nothing was sent, take the SDK path."""


@dataclass(frozen=True)
class FastLaneParts:
    """What the front gives a fast lane: its DNS-rebinding rules, its session lookup,
    its serialised `tools/list` pages and the `serverInfo` its results carry."""

    allowed_hosts: list[str]
    allowed_origins: list[str]
    known_session: Callable[[str], bool]
    lister: ToolsListCache
    server_info: dict[str, Any]


class ServersSurface(Protocol):
    """The registered servers on `/mcp` (pillar 1, gateway/servers/mcp/handlers.py).

    ``target`` is the server of `/mcp/servers/{name}` (names are then the server's
    own), None on the aggregated `/mcp` (names namespaced by server)."""

    @property
    def catalog_version(self) -> int:
        """Bumped on every catalog change (cursors are cut from it)."""

    def visible(self, principal: Principal, target: str) -> bool:
        """Whether `/mcp/servers/{target}` is a server the caller may use."""

    def tool_view(self, principal: Principal) -> ToolList:
        """The caller's tools on `/mcp` (an object replaced, never changed)."""

    def server_tools(self, principal: Principal, target: str) -> tuple[object, list[types.Tool]]:
        """One server's tools, and the object they came from (replaced on change)."""

    def input_schema(
        self, principal: Principal, target: str | None, name: str
    ) -> dict[str, Any] | None:
        """A tool's input schema, from memory."""

    def on_change(
        self,
        catalog_changed: Callable[[], Awaitable[None]],
        resource_updated: Callable[[str], Awaitable[None]],
    ) -> None:
        """Call ``catalog_changed`` when the lists change; ``resource_updated`` with a
        subscribed URI that changed, for 2026-07-28 listen streams."""

    def fast_lane(self, parts: FastLaneParts) -> FastLane | None:
        """Its fast path, if it has one."""

    async def task_call(
        self, ctx: Ctx, principal: Principal, target: str | None, params: Any
    ) -> dict[str, Any] | None:
        """A `tools/call` (raw params) made an MCP task: its wire result; None when the
        call is an ordinary one."""

    async def task_request(
        self, ctx: Ctx, principal: Principal, method: str, params: Any
    ) -> dict[str, Any]:
        """A `tasks/*` request (raw params): its wire result."""

    def is_retry(self, ctx: Ctx, params: types.CallToolRequestParams) -> bool:
        """A retry of a call it parked for the agent's answers (2026-07-28)."""

    async def call_tool(
        self,
        ctx: Ctx,
        principal: Principal,
        target: str | None,
        params: types.CallToolRequestParams,
        arguments: dict[str, Any],
        via: str | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """Call a server's tool (``params.name``, with ``arguments``); ``via``: the
        meta-tool it came through."""

    async def resources(self, principal: Principal, target: str | None) -> list[types.Resource]:
        """The resources the caller may list."""

    async def templates(
        self, principal: Principal, target: str | None
    ) -> list[types.ResourceTemplate]:
        """The resource templates the caller may list."""

    async def read_resource(
        self, ctx: Ctx, principal: Principal, target: str | None, params: Any
    ) -> types.ReadResourceResult:
        """Read a resource at its backend."""

    async def subscription(
        self,
        ctx: Ctx,
        principal: Principal,
        target: str | None,
        front_uri: str,
        subscribe: bool,
        stream: object = None,
    ) -> None:
        """(Un)subscribe the agent's session, or a listen ``stream``, to a resource."""

    async def prompts(self, principal: Principal, target: str | None) -> list[types.Prompt]:
        """The prompts the caller may list."""

    async def get_prompt(
        self, ctx: Ctx, principal: Principal, target: str | None, params: Any
    ) -> types.GetPromptResult:
        """Render a prompt at its backend."""

    async def complete(
        self, ctx: Ctx, principal: Principal, target: str | None, params: Any
    ) -> types.CompleteResult:
        """Ask the backend to complete a prompt or template argument."""
