"""What the request path hands to the audit trail: an :class:`AuditEntry`, built with
no I/O, no serialisation and no masking (the writer does those, off the path)."""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from starlette.types import Scope

from gateway.auth.principal import Principal
from gateway.observability.logging import current_request_id
from gateway.observability.masking import SecretMask
from gateway.observability.tracing import current_trace_id

Outcome = Literal[
    "ok", "tool_error", "error", "denied", "rate_limited", "timeout", "cancelled", "unavailable"
]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
ROUTES: tuple[str, ...] = ("rest", "mcp", "mcp-fast", "meta", "cli")

# The ASGI scope of the request being served (set by the request middleware): the
# writer reads the client's address, user agent and MCP client from it later.
REQUEST_SCOPE: ContextVar[Scope | None] = ContextVar("audit_request_scope", default=None)


@dataclass(slots=True, kw_only=True)
class AuditEntry:
    """One event to audit, as the request path saw it.

    ``arguments`` and ``detail`` are the raw values (masked by the writer with ``mask``,
    the server's sealed secrets, plus secret-named fields and token shapes); ``result``
    may be the raw answer (bytes or a pydantic model), measured by the writer for
    ``bytes_out`` and the token estimate.
    """

    action: str
    outcome: str = "ok"
    principal: Principal | None = None
    actor: dict[str, Any] | None = None  # who, when there is no principal (auth failures)
    route: str | None = None
    server: str | None = None
    target: str | None = None
    via: str | None = None
    arguments: Any = None
    detail: dict[str, Any] | None = None
    error_code: str | None = None
    error: str | None = None
    latency_ms: float | None = None
    bytes_in: int | None = None
    bytes_out: int | None = None
    result: Any = None
    mask: SecretMask | None = None
    ts: float = field(default_factory=time.time)
    request_id: str | None = field(default_factory=current_request_id)
    scope: Scope | None = field(default_factory=REQUEST_SCOPE.get)
    # hex: the trace the event happened in (a traced call, or the agent's traceparent)
    trace_id: str | None = field(default_factory=current_trace_id)
