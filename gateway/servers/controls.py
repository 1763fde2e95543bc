"""The pipeline's ``size`` and ``limit`` stages, on every call whatever its path.

``size``: a call whose arguments are larger than its server's (or tool's)
``max_request_bytes`` (gateway/servers/limits.py) is refused before the backend:
:class:`ArgumentsTooLarge`, HTTP 413 ``payload_too_large`` on REST and the JSON-RPC
error -32600 on MCP (what a body over the global limit gets there), audited with
outcome ``denied``. Installed only while some server has a size limit of its own
(``ServerService.load``).

``limit``: rate limits, concurrency limits, quotas and budgets of the policy in force
(gateway/policy/limits.py). Installed only while the policy has limits
(:func:`follow_limits`): with none, the stage costs nothing. A refusal is
:class:`LimitExceeded` (429 on REST, JSON-RPC error -32029 on MCP); the record stage
audits it with outcome ``rate_limited``.
"""

from __future__ import annotations

from typing import Any

from mcp_types.jsonrpc import INVALID_REQUEST

from gateway.audit.rows import result_size
from gateway.policy.engine import CompiledPolicy
from gateway.policy.limits import Limiter
from gateway.policy.service import PolicyService
from gateway.servers.calls import qualified
from gateway.servers.limits import arguments_size
from gateway.servers.pipeline import Call, CallDenied, Pipeline, StageDefaults

# Where a budget's warning goes in the result the agent gets.
WARNINGS_META = "io.mcpgw/warnings"


class ArgumentsTooLarge(CallDenied):
    """A call's arguments are over its server's (or tool's) ``max_request_bytes``."""

    status_code = 413
    code = "payload_too_large"
    rpc_code = INVALID_REQUEST  # as a body over MCPGW_MAX_REQUEST_BYTES is answered on /mcp

    def rpc_data(self) -> dict[str, Any]:
        """``error.data`` of the JSON-RPC error: the stable code and the figures."""
        return {"code": self.code, **self.details}


class ArgumentsSize(StageDefaults):
    """Refuses a call whose arguments are larger than its limit (see the module doc)."""

    async def enter(self, call: Call) -> None:
        limits = call.target.runtime.spec.limits
        if limits is None:
            return
        server, tool = call.target.server, call.target.tool
        backend = call.target.backend  # per-tool limits are by the backend's tool names
        cap = limits.max_bytes_for(backend)
        if cap is None:
            return
        size = arguments_size(call.arguments)
        if size > cap:
            whose = f"tool {tool!r}" if backend in limits.sizes else "its tools"
            raise ArgumentsTooLarge(
                f"the arguments of {qualified(server, tool)} are {size} bytes; server "
                f"{server!r} accepts at most {cap} bytes for {whose} (max_request_bytes)",
                server=server,
                tool=tool,
                limit=cap,
                size=size,
            )


class Limit(StageDefaults):
    """Counts each call in before the backend and out after it."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter

    async def enter(self, call: Call) -> None:
        target = qualified(call.target.server, call.target.tool)
        call.admission = await self.limiter.admit(call.principal, call.target.server, target)

    def leave(self, call: Call, error: BaseException | None) -> None:
        admission = call.admission
        if admission is None:
            return
        if admission.warnings:
            _warn(call, admission.warnings)
        if admission.in_flight or admission.budgets:
            target = qualified(call.target.server, call.target.tool)
            size = call.bytes_out
            if size is None and admission.budgets:
                size = result_size(call.result)
            self.limiter.release(admission, target, size)


def _warn(call: Call, warnings: list[str]) -> None:
    """Put a budget's warning in the result's ``_meta`` (a result object the SDK path
    or REST is about to send; the fast path adds it as it sends, fastcall.py)."""
    result = call.result if call.result is not None else call.answer
    meta = getattr(result, "meta", None)
    if result is not None and hasattr(result, "meta") and not isinstance(result, bytes):
        result.meta = {**(meta or {}), WARNINGS_META: list(warnings)}


def follow_limits(policies: PolicyService, pipeline: Pipeline, limiter: Limiter) -> None:
    """Keep the limit stage in step with the policy in force: installed with its
    limits while there are any, removed when there are none."""
    stage = Limit(limiter)

    def changed(policy: CompiledPolicy) -> None:
        limiter.load(policy)
        pipeline.install("limit", stage if limiter.active else None)

    policies.listeners.append(changed)
    changed(policies.counted)
