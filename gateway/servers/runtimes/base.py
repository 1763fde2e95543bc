"""What every runtime adapter shares: the server spec, health, errors and the Protocols."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mcp import types

from gateway.observability.masking import SecretMask
from gateway.servers.limits import RequestLimits

if TYPE_CHECKING:
    from gateway.observability.tracing import Telemetry
    from gateway.servers.runtimes.direct import DirectRoute

# Defined in core (the SSRF guard raises them too); re-exported: import them from here.
from gateway.backend_errors import BackendError as BackendError
from gateway.backend_errors import BackendNotConnected as BackendNotConnected
from gateway.backend_errors import BackendRequestError as BackendRequestError
from gateway.backend_errors import BackendTimeout as BackendTimeout
from gateway.backend_errors import BackendUnavailable as BackendUnavailable
from gateway.backend_errors import ReplicaFailed as ReplicaFailed

HealthStatus = Literal["healthy", "degraded", "unhealthy", "stopped"]


class ToolNotFound(BackendError):
    """No such tool on the backend."""


@dataclass(frozen=True)
class ServerSpec:
    """Everything needed to run one registered server (secrets decrypted, in memory only)."""

    id: str
    name: str
    type: str
    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict)
    secret_headers: dict[str, str] = field(default_factory=dict)
    version: int = 1
    max_concurrency: int = 32
    team_id: str | None = None
    enabled: bool = True
    # Its own request limits (timeout, arguments size; per tool too); None: the global ones.
    limits: RequestLimits | None = None

    def secret_values(self) -> tuple[str, ...]:
        """Values to mask wherever this server's output or errors are shown."""
        return tuple(v for v in (*self.secret_env.values(), *self.secret_headers.values()) if v)

    @cached_property
    def secrets(self) -> SecretMask:
        """:meth:`secret_values` as the one masker of this server's results (every path)."""
        return SecretMask(self.secret_values())


@dataclass
class Health:
    status: HealthStatus = "stopped"
    last_error: str | None = None
    latency_ms: float | None = None
    checked_at: datetime | None = None
    restarts: int = 0
    in_flight: int = 0
    protocol_version: str | None = None

    def mark(
        self, status: HealthStatus, error: str | None = None, latency_ms: float | None = None
    ) -> bool:
        """Update; returns True when the status or error changed (worth persisting)."""
        changed = (status, error) != (self.status, self.last_error)
        self.status, self.last_error = status, error
        if latency_ms is not None:
            self.latency_ms = latency_ms
        self.checked_at = datetime.now(UTC)
        return changed

    def replicas(self) -> list[dict[str, Any]] | None:
        """Each replica's state where the server has several (runtimes/replicas.py)."""
        return None


@dataclass
class Catalog:
    """Everything a server lists, all pages fetched."""

    tools: list[types.Tool] = field(default_factory=list)
    resources: list[types.Resource] = field(default_factory=list)
    resource_templates: list[types.ResourceTemplate] = field(default_factory=list)
    prompts: list[types.Prompt] = field(default_factory=list)


@dataclass
class RuntimeContext:
    """Process-wide facilities handed to runtimes by the pool."""

    data_dir: Path
    connect_timeout: float
    allow_private_urls: bool
    # Host variables a child server may see (trust stores, proxies); never MCPGW_*.
    inherit_env: tuple[str, ...]
    # Called (not awaited by the backend's read loop) when a server says its lists changed.
    # ``announced``: the backend said so (vs. a refresh after connecting).
    on_list_changed: Callable[..., Awaitable[None]]
    # Called when health changes, to persist it.
    on_health_changed: Callable[[str, Health], Awaitable[None]]
    # Called when a backend says a subscribed resource changed.
    on_resource_updated: Callable[[str, str], Awaitable[None]] = field(
        default=lambda _server, _uri: _noop()
    )
    # How package servers (npx, uvx) are isolated: `auto` (bubblewrap where it works),
    # `bwrap` (required) or `none` (MCPGW_SERVER_ISOLATION).
    isolation: Literal["auto", "bwrap", "none"] = "auto"
    # The gateway's tracing: a backend's (re)connections get spans while it exports.
    telemetry: Telemetry | None = None


class Connector(Protocol):
    """One adapter per server type: how to reach a server.

    Returns the candidates to try in order (a remote server may offer Streamable
    HTTP and legacy SSE); each is something ``mcp.Client`` can connect to.
    """

    async def targets(self, spec: ServerSpec, ctx: RuntimeContext) -> Sequence[Any]: ...


class ServerRuntime(Protocol):
    """A live backend: started on demand and kept alive, listed and called, health-checked.

    Implementations: :class:`~gateway.servers.runtimes.connection.McpConnection` (one MCP
    session over any connector) and :class:`~gateway.servers.runtimes.bundle.BundleRuntime`
    (several of those under one namespace).
    """

    spec: ServerSpec
    health: Health
    last_used: float

    @property
    def running(self) -> bool: ...

    async def start(self) -> None:
        """Connect (spawning the process or container if needed); raise BackendUnavailable."""

    async def stop(self, *, final: bool = False) -> None:
        """Close the session and free the process/container. Idempotent. ``final``: the
        server was removed or replaced, so later calls must not restart it."""

    async def catalog(self) -> Catalog:
        """List tools, resources, templates and prompts (every page)."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], timeout: float
    ) -> types.CallToolResult:
        """Call one tool; transport failures raise BackendError, tool failures come back
        as results with ``is_error``."""

    async def ping(self) -> float:
        """Round-trip a ping; returns milliseconds or raises BackendError."""

    async def read_resource(self, uri: str, timeout: float) -> types.ReadResourceResult:
        """Read one resource."""

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None, timeout: float
    ) -> types.GetPromptResult:
        """Render one prompt."""

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context: dict[str, str] | None,
        timeout: float,
    ) -> types.CompleteResult:
        """Complete an argument of a prompt or resource template."""

    async def subscribe(self, uri: str, subscribe: bool, timeout: float) -> None:
        """Subscribe to (or unsubscribe from) updates of one resource."""

    def direct_route(
        self, *, modern: bool = True, affinity: str | None = None
    ) -> DirectRoute | None:
        """The fast path's route to the backend session of the agent's era, while one is
        connected over Streamable HTTP; None sends calls the SDK path. ``affinity``: the
        agent's 2025-11-25 session, whose calls a replica set keeps on one replica."""


async def _noop() -> None:
    return None


def monotonic() -> float:
    return time.monotonic()
