"""Request limits of one server and of its tools: how long a call may take and how large
its arguments may be.

Each limit is resolved per call as: the tool's own value → the server's → the global
setting (``MCPGW_SERVER_CALL_TIMEOUT_SECONDS``; ``MCPGW_MAX_REQUEST_BYTES`` is the
global body limit, which every request meets first). They are stored with the server
(``servers.limits``, JSON) and held in memory on its
:class:`~gateway.servers.runtimes.base.ServerSpec` as a :class:`RequestLimits`, so a
call resolves its limits with a dict lookup, never a database read. A server without
limits has ``spec.limits`` None: its calls cost what they did before.

A per-server (or per-tool) ``max_request_bytes`` cannot exceed the global one: the
global limit is enforced on the whole request body before the gateway knows which
server it is for (on `/mcp` the server is named inside the body).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import Field, field_validator

from gateway.errors import InvalidInput
from gateway.schemas import Strict

# The bound of MCPGW_SERVER_CALL_TIMEOUT_SECONDS (gateway/config.py).
MAX_TIMEOUT_SECONDS = 3600.0
_MAX_TOOLS = 1000


class ToolLimits(Strict):
    """One tool's own limits; a value left out is the server's (or the global one)."""

    call_timeout_seconds: float | None = Field(
        None,
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
        description="Seconds a tools/call may take before it times out (as a tool error).",
    )
    max_request_bytes: int | None = Field(
        None,
        ge=1,
        description="Largest arguments a tools/call may carry, in bytes of compact JSON; "
        "larger calls are refused before they reach the server. At most "
        "MCPGW_MAX_REQUEST_BYTES.",
    )


class LimitsIn(ToolLimits):
    """A server's request limits, and per-tool overrides (by the server's own tool names).

    ``{}`` (or no ``limits``) leaves every limit to the global settings."""

    tools: dict[str, ToolLimits] = Field(
        default_factory=dict,
        max_length=_MAX_TOOLS,
        description="Per tool (the server's own tool name): limits that override the server's.",
        examples=[{"slow_report": {"call_timeout_seconds": 300}}],
    )

    @field_validator("tools")
    @classmethod
    def _tool_names(cls, value: dict[str, ToolLimits]) -> dict[str, ToolLimits]:
        for name in value:
            if not name or len(name) > 512:
                raise ValueError("tool names are 1 to 512 characters")
        return value

    def stored(self) -> dict[str, Any] | None:
        """The JSON kept in ``servers.limits``: only what is set (None: nothing is)."""
        data = self.model_dump(exclude_none=True)
        tools = {name: v for name, v in data.pop("tools", {}).items() if v}
        if tools:
            data["tools"] = tools
        return data or None

    def sizes(self) -> list[tuple[str, int]]:
        """(field, value) of every ``max_request_bytes`` given, for the check against
        the global limit."""
        found = []
        if self.max_request_bytes is not None:
            found.append(("limits.max_request_bytes", self.max_request_bytes))
        for name, tool in self.tools.items():
            if tool.max_request_bytes is not None:
                found.append((f"limits.tools.{name}.max_request_bytes", tool.max_request_bytes))
        return found


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """A server's limits in memory: each lookup is one dict ``get``.

    ``timeouts`` and ``sizes`` hold the tools with a value of their own; any other tool
    gets the server's (``timeout``, ``max_bytes``), and None there means the global
    setting."""

    timeout: float | None = None
    max_bytes: int | None = None
    timeouts: Mapping[str, float] = field(default_factory=dict)
    sizes: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, stored: Mapping[str, Any] | None) -> RequestLimits | None:
        """From ``servers.limits`` (None when nothing is set)."""
        if not stored:
            return None
        tools: Mapping[str, Mapping[str, Any]] = stored.get("tools") or {}
        return cls(
            timeout=stored.get("call_timeout_seconds"),
            max_bytes=stored.get("max_request_bytes"),
            timeouts={
                name: float(t["call_timeout_seconds"])
                for name, t in tools.items()
                if t.get("call_timeout_seconds") is not None
            },
            sizes={
                name: int(t["max_request_bytes"])
                for name, t in tools.items()
                if t.get("max_request_bytes") is not None
            },
        )

    def timeout_for(self, tool: str, default: float) -> float:
        """Seconds a call of ``tool`` may take: its own, the server's, else ``default``."""
        return self.timeouts.get(tool, self.timeout) or default

    def max_bytes_for(self, tool: str) -> int | None:
        """The largest arguments a call of ``tool`` may carry (None: the global limit)."""
        return self.sizes.get(tool, self.max_bytes)

    @property
    def bounds_size(self) -> bool:
        """Whether any call of this server has a size limit of its own."""
        return self.max_bytes is not None or bool(self.sizes)


def stored_limits(limits: LimitsIn | None, global_max: int | None) -> dict[str, Any] | None:
    """``limits`` as stored with a server; a size above ``global_max`` (the global body
    limit, checked on the whole body first, so it would never apply) is a 422 naming
    its field."""
    if limits is None:
        return None
    over = [(f, v) for f, v in limits.sizes() if global_max is not None and v > global_max]
    if over:
        message = f"at most MCPGW_MAX_REQUEST_BYTES ({global_max}), the global body limit"
        raise InvalidInput(
            f"{over[0][0]}: {message}",
            errors=[{"field": f, "message": message} for f, _ in over],
        )
    return limits.stored()


def arguments_size(arguments: Mapping[str, Any]) -> int:
    """The size of a call's arguments as the limit counts it: bytes of compact JSON
    (UTF-8), the same whichever path the call came by."""
    try:
        return len(orjson.dumps(arguments))
    except orjson.JSONEncodeError:  # an integer past 64 bits: orjson's only refusal here
        return len(json.dumps(arguments, separators=(",", ":"), ensure_ascii=False).encode())
