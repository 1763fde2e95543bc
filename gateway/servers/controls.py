"""The pipeline's ``limit`` stage: rate limits, concurrency limits, quotas and budgets
of the policy in force (gateway/policy/limits.py), on every call whatever its path.

Installed only while the policy has limits (:func:`follow_limits`): with none, the
stage costs nothing. A refusal is :class:`LimitExceeded` (429 on REST, JSON-RPC error
-32029 on MCP); the record stage audits it with outcome ``rate_limited``.
"""

from __future__ import annotations

from gateway.audit.rows import result_size
from gateway.policy.engine import CompiledPolicy
from gateway.policy.limits import Limiter
from gateway.policy.service import PolicyService
from gateway.servers.calls import qualified
from gateway.servers.pipeline import Call, Pipeline, StageDefaults

# Where a budget's warning goes in the result the agent gets.
WARNINGS_META = "io.mcpgw/warnings"


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
