"""Tool calls a backend runs as its own MCP task, driven to their end by the gateway.

A backend tool may declare that it runs as a task: `execution.taskSupport` in a
2025-11-25 tool list (SEP-1686), or `_meta["io.modelcontextprotocol/tasks"]` from a
2026-07-28 backend with the tasks extension (SEP-2663). A `required` one answers a
plain `tools/call` with an error (server-everything's `simulate-research-query`:
-32601 "requires task augmentation"; fastmcp-tasks: -32021), so the gateway calls it
as a task whatever the entry point, and an `optional` one when the gateway runs the
call as a job itself (an agent's MCP task or an async REST call, relay.long_running):
the backend then does the long work its own way and the gateway's job follows it.

Either way the caller sees an ordinary tool call: the backend's task is created, its
status messages reach the caller as progress (what the job records as progress
events), its questions go to the caller through the relay, and its result or error
comes back as the call's. A call that is cancelled or runs out of time cancels the
backend's task. The backend's task id never leaves this module: an agent only ever
sees the gateway's own task (servers/mcp/tasks.py).

- **2025-11-25**: `tools/call` with `task: {ttl}` → `CreateTaskResult` (`{task}`);
  `tasks/result` waits for the end, and whatever the backend asks meanwhile
  (elicitation, sampling) arrives on the session as usual (relay.Callers); `tasks/get`
  is polled alongside for the status message.
- **2026-07-28**: `tools/call` declaring the extension in its request's client
  capabilities → a flat `CreateTaskResult` (`resultType: "task"`), or a complete
  result when the backend chose to run it inline; `tasks/get` is polled (backing off
  from 20 ms to the backend's `pollIntervalMs`) until it inlines the `result` or the
  `error`; an `input_required` status's `inputRequests` are asked of the caller and
  answered with `tasks/update`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from mcp import Client, types
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, TypeAdapter, ValidationError

from gateway.servers.runtimes.base import BackendError
from gateway.servers.runtimes.relay import Relay
from gateway.servers.runtimes.sdk_client import TASKS_EXTENSION, raw_request

RELATED_TASK = "io.modelcontextprotocol/related-task"
MISSING_CAPABILITY = -32021  # SEP-2663: the request lacks a capability the server needs
# What the gateway asks a backend to keep a finished task for: long enough to read it.
REQUESTED_TTL_MS = 3_600_000
_FIRST_POLL = 0.02  # seconds: quick tasks end quickly
_MAX_POLL = 5.0  # ...and a backend asking for a long interval still gets asked
_MAX_INPUT_ROUNDS = 16
_CANCEL_TIMEOUT = 5.0
_TERMINAL = ("completed", "failed", "cancelled")
# What a backend may ask its caller in an `input_required` status, and how to read it.
_ASKS: dict[str, TypeAdapter[Any] | None] = {
    "elicitation/create": TypeAdapter(types.ElicitRequestParams),
    "sampling/createMessage": TypeAdapter(types.CreateMessageRequestParams),
    "roots/list": None,
}

Spawn = Callable[[Coroutine[Any, Any, None]], None]


def task_support(tool: types.Tool) -> tuple[str | None, bool]:
    """Whether the backend runs ``tool`` as a task (``"optional"``/``"required"``, else
    None): `execution.taskSupport` (2025-11-25 wire), or, from a backend whose
    2026-07-28 tool list has no such field, the same under the tool's
    `_meta["io.modelcontextprotocol/tasks"]`; and whether it first gathers input
    (`inputFirst` there: its first `input_required` round is answered before the call
    becomes a task)."""
    support = tool.execution.task_support if tool.execution is not None else None
    declared = (tool.meta or {}).get(TASKS_EXTENSION)
    declared = declared if isinstance(declared, dict) else {}
    if support is None:
        support = declared.get("taskSupport")
    if support not in ("optional", "required"):
        return None, False
    return support, declared.get("inputFirst") is True


def undeclared_as_optional(tool: types.Tool) -> types.Tool:
    """``tool`` of a 2026-07-28 backend that offers the tasks extension: its tool list
    says nothing per tool (the server decides per call, SEP-2663), so a tool that does
    not say otherwise is marked as one that may run as a task, in the tool's
    `_meta["io.modelcontextprotocol/tasks"]` where agents and :func:`task_support`
    read it."""
    if task_support(tool)[0] is not None or (
        tool.execution is not None and tool.execution.task_support == "forbidden"
    ):
        return tool
    declared = (tool.meta or {}).get(TASKS_EXTENSION)
    marked = {**(declared if isinstance(declared, dict) else {}), "taskSupport": "optional"}
    return tool.model_copy(update={"meta": {**(tool.meta or {}), TASKS_EXTENSION: marked}})


def requires_task(error: types.ErrorData) -> bool:
    """The backend refused a plain call because the tool must run as a task (-32021
    naming the tasks extension among the capabilities it requires)."""
    if error.code != MISSING_CAPABILITY:
        return False
    data = error.data if isinstance(error.data, Mapping) else {}
    required = data.get("requiredCapabilities")
    extensions = required.get("extensions") if isinstance(required, Mapping) else None
    return isinstance(extensions, Mapping) and TASKS_EXTENSION in extensions


def runs_as_task(support: str | None, relay: Relay | None) -> bool:
    """Call this tool as a backend task: always when the backend requires it, and when
    it allows it and the gateway runs the call as a job (an agent's task, async REST)."""
    if support == "required":
        return True
    return support == "optional" and relay is not None and relay.long_running


class BackendTaskCall:
    """One tool call run as a backend task (see the module docstring)."""

    def __init__(
        self,
        client: Client,
        server: str,
        name: str,
        arguments: dict[str, Any],
        relay: Relay | None,
        spawn: Spawn,
    ) -> None:
        self.client = client
        self.server = server
        self.name = name
        self.arguments = arguments
        self.relay = relay
        self.spawn = spawn
        self.modern = client.protocol_version in MODERN_PROTOCOL_VERSIONS
        self.task_id: str | None = None
        self._status: str | None = None
        self._updates = 0

    async def run(self) -> types.CallToolResult:
        """The call's result once the backend's task has ended (its error raised as the
        backend's own, as for any call)."""
        try:
            return await (self._modern() if self.modern else self._legacy())
        except BaseException:
            if self.task_id is not None:
                self.spawn(self._cancel(self.task_id))
            raise

    # --- 2025-11-25 ---------------------------------------------------------------------
    async def _legacy(self) -> types.CallToolResult:
        params = {"name": self.name, "arguments": self.arguments,
                  "task": {"ttl": REQUESTED_TTL_MS}}  # fmt: skip
        created = await self._send("tools/call", params)
        task = created.get("task")
        if not isinstance(task, Mapping):  # the backend ran it at once after all
            return _call_result(created)
        self.task_id = task_id = _task_id(task)
        watcher = asyncio.create_task(self._watch(task_id, _interval(task, "pollInterval")))
        try:
            # Waits for the end; questions arrive on the session meanwhile (relay.Callers).
            body = await self._send("tasks/result", {"taskId": task_id})
        finally:
            watcher.cancel()
            with contextlib.suppress(BaseException):
                await watcher
        self.task_id = None  # ended: nothing to cancel
        return _call_result(body)

    async def _watch(self, task_id: str, interval: float) -> None:
        """Report the task's status messages while `tasks/result` waits."""
        with contextlib.suppress(MCPError, BackendError, ValidationError):
            while True:
                await asyncio.sleep(interval)
                got = await self._send("tasks/get", {"taskId": task_id})
                await self._note(got)
                if got.get("status") in _TERMINAL:
                    return

    # --- 2026-07-28 ---------------------------------------------------------------------
    async def _modern(self) -> types.CallToolResult:
        params: dict[str, Any] = {"name": self.name, "arguments": self.arguments}
        created = await self._send("tools/call", params)
        for _ in range(_MAX_INPUT_ROUNDS):  # the backend asks before it makes a task
            if "inputRequests" not in created or created.get("resultType") == "task":
                break
            answers = await self._answer(created["inputRequests"])
            retry = {**params, "inputResponses": answers}
            if created.get("requestState") is not None:
                retry["requestState"] = created["requestState"]
            created = await self._send("tools/call", retry)
        if created.get("resultType") != "task":
            return _call_result(created)
        self.task_id = task_id = _task_id(created)
        body = await self._follow(task_id, _interval(created, "pollIntervalMs"))
        self.task_id = None
        return body

    async def _follow(self, task_id: str, interval: float) -> types.CallToolResult:
        """Poll `tasks/get` to the end, answering what the task asks on the way."""
        delay, rounds = min(_FIRST_POLL, interval), 0
        while True:
            got = await self._send("tasks/get", {"taskId": task_id})
            await self._note(got)
            status = got.get("status")
            if status == "completed":
                return _call_result(got.get("result"))
            if status == "failed":
                raise MCPError.from_error_data(_error_data(got.get("error"), self.name))
            if status == "cancelled":
                raise BackendError(f"server {self.server!r} cancelled its task for {self.name!r}")
            if status == "input_required" and got.get("inputRequests"):
                rounds += 1
                if rounds > _MAX_INPUT_ROUNDS:
                    raise BackendError(f"tool {self.name!r} asked for input too many times")
                answers = await self._answer(got["inputRequests"])
                await self._send("tasks/update", {"taskId": task_id, "inputResponses": answers})
                delay = _FIRST_POLL
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, interval)

    async def _answer(self, requests: Any) -> dict[str, Any]:
        """Ask the caller each of the backend's input requests; the wire answers by key."""
        if not isinstance(requests, Mapping):
            raise BackendError(f"tool {self.name!r} sent malformed input requests")
        answers: dict[str, Any] = {}
        for key, request in requests.items():
            method = request.get("method") if isinstance(request, Mapping) else None
            if method not in _ASKS:
                raise BackendError(f"tool {self.name!r} asked for {method!r}, which is not relayed")
            answers[str(key)] = await self._ask(str(method), request.get("params"))
        return answers

    async def _ask(self, method: str, params: Any) -> Any:
        relay = self.relay
        if relay is None or not callable(getattr(relay, "request", None)):
            raise BackendError(
                f"tool {self.name!r} asked for input ({method}) and this call has nobody to "
                "ask: call it from an MCP client that can answer, or as an MCP task"
            )
        adapter = _ASKS[method]
        try:
            typed = adapter.validate_python(params or {}) if adapter is not None else None
        except ValidationError:
            raise BackendError(f"tool {self.name!r} sent a malformed {method} request") from None
        answer = await relay.request(method, typed)
        if isinstance(answer, types.ErrorData):
            raise BackendError(f"{method} for tool {self.name!r} went unanswered: {answer.message}")
        if isinstance(answer, BaseModel):
            return answer.model_dump(by_alias=True, exclude_none=True, mode="json")
        return answer

    # --- shared -------------------------------------------------------------------------
    async def _note(self, got: Mapping[str, Any]) -> None:
        """A new status message reaches the caller as progress (a count: no total)."""
        message = got.get("statusMessage")
        relay = self.relay
        if not isinstance(message, str) or message == self._status:
            return
        self._status = message
        self._updates += 1
        if relay is not None and relay.wants_progress:
            with contextlib.suppress(Exception):  # the caller may be gone: the call goes on
                await relay.progress(float(self._updates), None, message[:500])

    async def _send(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return await raw_request(
            self.client, method, params, declare=TASKS_EXTENSION if self.modern else None
        )

    async def _cancel(self, task_id: str) -> None:
        """Best effort: the backend's task is not left running for a call given up."""
        with contextlib.suppress(BaseException):
            async with asyncio.timeout(_CANCEL_TIMEOUT):
                await self._send("tasks/cancel", {"taskId": task_id})


def _task_id(task: Mapping[str, Any]) -> str:
    task_id = task.get("taskId")
    if not isinstance(task_id, str) or not task_id:
        raise BackendError("the backend created a task without a taskId")
    return task_id


def _interval(task: Mapping[str, Any], field: str) -> float:
    """The backend's suggested poll interval, in seconds, kept within reason."""
    value = task.get(field)
    seconds = value / 1000 if isinstance(value, int | float) and value > 0 else 1.0
    return max(_FIRST_POLL, min(seconds, _MAX_POLL))


def _call_result(body: Any) -> types.CallToolResult:
    """The task's payload as the call's result, without the backend's task reference."""
    if not isinstance(body, Mapping):
        raise BackendError("the backend's task ended without a result")
    result = dict(body)
    meta = result.get("_meta")
    if isinstance(meta, Mapping) and RELATED_TASK in meta:
        result["_meta"] = {k: v for k, v in meta.items() if k != RELATED_TASK} or None
    result.pop("resultType", None)
    try:
        return types.CallToolResult.model_validate(result)
    except ValidationError:
        raise BackendError(
            "the backend's task ended with a result that is not a tool result"
        ) from None


def _error_data(error: Any, name: str) -> types.ErrorData:
    if isinstance(error, Mapping) and isinstance(error.get("code"), int):
        return types.ErrorData(
            code=error["code"], message=str(error.get("message", "")), data=error.get("data")
        )
    return types.ErrorData(code=-32603, message=f"the task for tool {name!r} failed")
