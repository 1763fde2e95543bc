"""The one resolution of a tool call's name: which server, which of its tools, which runtime.

REST `tools/execute`, the `/mcp` SDK handlers (EXECUTE_TOOL included) and the fast
path all resolve through :func:`find_target`, so they agree on what a caller may call:
on `/mcp` a name is `{server}__{tool}`, on `/mcp/servers/{name}` the server's own tool
name; the server must be enabled and visible to the caller (team-scoped servers are
for their team and admins), and the tool not hidden by the server's transforms (a
renamed tool is called by its new name: transforming.py). Whether the tool exists is
the backend's to say (the SDK path passes its error on); the fast path also wants the
tool in the catalog, which is its own eligibility check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.auth.principal import Principal
from gateway.errors import InvalidInput, NotFound
from gateway.servers.runtimes.base import ServerRuntime

if TYPE_CHECKING:
    from gateway.servers.service import ServerService
    from gateway.servers.transforming import ToolTransform

TOOL_SEPARATOR = "__"


@dataclass(frozen=True, slots=True)
class CallTarget:
    """A resolved call: the gateway's name for the server, the tool as the agent named
    it, and the runtime that reaches the backend; for a server with transforms
    (transforming.py), the backend's own tool name when it differs (``backend_tool``)
    and what the call's arguments and result go through (``transform``)."""

    server: str
    tool: str
    runtime: ServerRuntime
    backend_tool: str | None = None
    transform: ToolTransform | None = None

    @property
    def backend(self) -> str:
        """The tool's name on the backend (what is sent to it)."""
        return self.backend_tool or self.tool


def qualified(server: str, tool: str) -> str:
    """A server's tool (or prompt) as named on `/mcp`."""
    return f"{server}{TOOL_SEPARATOR}{tool}"


def split_name(name: str) -> tuple[str, str] | None:
    """``{server}__{tool}`` as (server, tool); None when it is not of that shape."""
    server, sep, tool = name.partition(TOOL_SEPARATOR)
    if not sep or not server or not tool:
        return None
    return server, tool


def split_qualified(name: str) -> tuple[str, str]:
    """:func:`split_name`, or InvalidInput (422, field ``tool``) for another shape."""
    parts = split_name(name)
    if parts is None:
        raise InvalidInput(
            f"tool {name!r} must be '<server>__<tool>'",
            errors=[{"field": "tool", "message": "expected '<server>__<tool>'"}],
        )
    return parts


# (server, tool) → the target of a server without transforms, last resolved.
_PLAIN_TARGETS: dict[tuple[str, str], CallTarget] = {}
_MAX_PLAIN_TARGETS = 4096


def find_target(
    servers: ServerService, principal: Principal, name: str, server: str | None = None
) -> CallTarget | None:
    """The target of a call of ``name`` (on ``server``'s own endpoint when given), or None
    when ``principal`` can call no such thing."""
    if server is None:
        parts = split_name(name)
        if parts is None:
            return None
        server, name = parts
    runtime = servers.visible_runtime(principal, server)
    if runtime is None:
        return None
    transforms = servers.transforms.get(server)  # most servers have none: one lookup
    if transforms is None:
        # Targets are immutable: the last one made for this name is reused while its
        # runtime is the one resolved (a frozen dataclass costs about a µs to make).
        key = (server, name)
        made = _PLAIN_TARGETS.get(key)
        if made is None or made.runtime is not runtime:
            if len(_PLAIN_TARGETS) >= _MAX_PLAIN_TARGETS:
                _PLAIN_TARGETS.clear()
            made = _PLAIN_TARGETS[key] = CallTarget(server, name, runtime)
        return made
    found = transforms.resolve(name)
    if found is None:
        return None  # hidden, or renamed: agents call it by its new name
    backend, transform = found
    return CallTarget(server, name, runtime, backend if backend != name else None, transform)


def resolve_target(
    servers: ServerService, principal: Principal, name: str, server: str | None = None
) -> CallTarget:
    """:func:`find_target`, or why not: InvalidInput for a name that is not
    ``{server}__{tool}``, NotFound (`tool_not_found`) for a server the caller cannot use."""
    if server is None:
        server, name = split_qualified(name)
    found = find_target(servers, principal, name, server)
    if found is None:
        if servers.visible_runtime(principal, server) is not None:  # a hidden tool
            raise NotFound(f"server {server!r} has no tool {name!r}", code="tool_not_found")
        raise NotFound(f"no enabled server named {server!r}", code="tool_not_found")
    return found
