"""Asking the agent's user to approve a call (a `require_approval` policy rule).

The authorize stage (pipeline.py) decides that a call needs approval and calls the
call's approver; each era asks its own way:

- **2025-11-25**: an `elicitation/create` on the agent's session, answered in place,
  when the session declared elicitation.
- **2026-07-28**: an `input_required` round, when the request's capabilities declare
  elicitation. The first round runs no backend call: the approver raises
  :class:`AskFirst` (the pipeline records nothing for it), and the handler parks the
  call with one question, the approval. The agent's retry brings the answer: its
  pipeline run asks :func:`retry_approver`, which hands the answer to the parked call
  and waits for its verdict, so the retry is authorized (and audited) on it. Approved,
  the parked call goes on to the backend, whose own questions become later rounds
  (approved already: not asked again); refused, nothing reaches the backend.

Clients that declared no elicitation are refused with the reason (pipeline.py).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

from mcp import types

from gateway.mcp.results import tool_error
from gateway.servers.mcp.sdk_input import SdkCall, SdkInputs
from gateway.servers.pipeline import Approver, NotSent
from gateway.servers.runtimes.base import ServerRuntime
from gateway.servers.runtimes.relay import CURRENT_RELAY, Relay

# What an approval question asks for: one yes/no.
APPROVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"approve": {"type": "boolean", "title": "Approve this call"}},
    "required": ["approve"],
}


class AskFirst(NotSent):
    """A 2026-07-28 call to be approved before it is made: the handler asks in an
    `input_required` round instead (see the module docstring)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def question(reason: str) -> types.ElicitRequestFormParams:
    """The elicitation that asks for approval."""
    return types.ElicitRequestFormParams(
        message=f"{reason}. Approve it?", requested_schema=APPROVAL_SCHEMA
    )


def accepted(answer: Any) -> bool:
    """Whether an elicitation's answer approves the call."""
    content = getattr(answer, "content", None) or {}
    return getattr(answer, "action", None) == "accept" and content.get("approve") is True


def approver(capabilities: Any, relay: Relay, modern: bool) -> Approver | None:
    """How to ask the agent's user to approve a call, or None when its client cannot be
    asked (it declared no elicitation)."""
    if capabilities is None or capabilities.elicitation is None:
        return None
    if modern:

        async def first_round(reason: str) -> bool:
            raise AskFirst(reason)

        return first_round

    async def in_session(reason: str) -> bool:
        return accepted(await relay.request("elicitation/create", question(reason)))

    return in_session


def park_for_approval(
    inputs: SdkInputs,
    call: SdkCall,
    relay: Relay,
    runtime: ServerRuntime,
    tool: str,
    arguments: dict[str, Any],
    reason: str,
) -> None:
    """Start ``call`` as a parked call whose first question is the approval; approved,
    it goes on to the backend (with the agent's relay, for the backend's own questions)."""
    call.verdict = asyncio.get_running_loop().create_future()

    async def approved_then_called() -> Any:
        answer = await call.ask("elicitation/create", question(reason))
        ok = accepted(answer)
        assert call.verdict is not None
        if not call.verdict.done():
            call.verdict.set_result(ok)
        if not ok:  # the retry's authorize stage refuses it first; nothing is sent
            return tool_error("the user did not approve it")
        return await runtime.call_tool(tool, arguments, math.inf)

    token = CURRENT_RELAY.set(relay)
    try:
        inputs.start(call, approved_then_called)
    finally:
        CURRENT_RELAY.reset(token)


def retry_approver(inputs: SdkInputs, call: SdkCall, params: Mapping[str, Any] | None) -> Approver:
    """The approver of a retry of ``call``: its agent's answer to the approval (handed
    to the parked call now, before the retry's own stages), or the one given before."""

    async def approve(_reason: str) -> bool:
        verdict = call.verdict
        if verdict is None:
            return False
        if not verdict.done():
            await inputs.bridge.answer(call, (params or {}).get("inputResponses"))
            await asyncio.wait_for(asyncio.shield(verdict), timeout=30)
        return verdict.result()

    return approve
