"""MCP tasks on `/mcp`: task-augmented `tools/call` and the `tasks/*` methods, in both
protocol eras, over the one implementation of tool calls as jobs (servers/tasks.py).

A task is a job of kind `tool_call`; its id is the job's. This module only translates:

- **2026-07-28** (the `io.modelcontextprotocol/tasks` extension, SEP-2663): the agent
  declares the extension in its request's `_meta` client capabilities and the server
  decides. The gateway makes a task of a call to a tool the backend runs as one
  (`execution.taskSupport` `optional` or `required`, see view.task_support) and
  answers a flat `CreateTaskResult` (`resultType: "task"`); a `required` tool called
  without the extension is -32021. `tasks/get` inlines the result (or the JSON-RPC
  error, or the pending `inputRequests`), `tasks/update` delivers `inputResponses`,
  `tasks/cancel` acknowledges with an empty result; `tasks/result` and `tasks/list`
  do not exist (-32601). Without the extension in a request, `tasks/*` is -32021.
- **2025-11-25** (tasks, experimental): the agent asks with `params.task` — for any
  tool: the gateway can run every call as a job — and gets `{task: {...}}`;
  `tasks/get`, `tasks/result` (waits for the end), `tasks/list` and `tasks/cancel`
  answer as that revision defines, and the session is sent
  `notifications/tasks/status` when the task ends.

Either way an unknown id, or another caller's, is -32602, and the call itself goes
through the call pipeline like any other (audited with route `mcp`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from gateway.auth.principal import Principal
from gateway.errors import AppError
from gateway.jobs.models import TERMINAL_EVENTS, Job
from gateway.servers.calls import find_target
from gateway.servers.mcp.sdk_input import REQUESTS, SdkInputs
from gateway.servers.mcp.view import CatalogView
from gateway.servers.runtimes.sdk_client import TASKS_EXTENSION
from gateway.servers.tasks import AgentRound, CallTasks, Question

log = logging.getLogger("gateway.servers")
Ctx = ServerRequestContext[Any, Any]
CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
RELATED_TASK = "io.modelcontextprotocol/related-task"
MISSING_CAPABILITY = -32021
HEADER_MISMATCH = -32020
POLL_INTERVAL_MS = 500
TASK_METHODS = ("tasks/get", "tasks/result", "tasks/list", "tasks/cancel", "tasks/update")
_STATUS = {
    "pending": "working",
    "running": "working",
    "review": "completed",
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
_TERMINAL = ("completed", "failed", "cancelled")
# What REST adds to a tool result that an MCP result does not carry.
_REST_ONLY = ("duration_ms", "backend_error")


def modern(ctx: Ctx) -> bool:
    """The request is of the 2026-07-28 era (stateless, per-request capabilities)."""
    return ctx.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS


def declares_tasks(params: Mapping[str, Any] | None) -> bool:
    """The request's `_meta` client capabilities declare the tasks extension."""
    meta = params.get("_meta") if isinstance(params, Mapping) else None
    caps = meta.get(CLIENT_CAPABILITIES) if isinstance(meta, Mapping) else None
    extensions = caps.get("extensions") if isinstance(caps, Mapping) else None
    return isinstance(extensions, Mapping) and TASKS_EXTENSION in extensions


def _missing_capability() -> MCPError:
    required: dict[str, Any] = {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}
    return MCPError(
        MISSING_CAPABILITY, f"this request needs the {TASKS_EXTENSION} extension", required
    )


class McpTasks:
    """The MCP face of :class:`CallTasks` (see the module docstring)."""

    def __init__(self, tasks: CallTasks, view: CatalogView) -> None:
        self.tasks = tasks
        self.view = view
        self._notifiers: set[asyncio.Task[None]] = set()

    # --- tools/call ---------------------------------------------------------------------
    async def call(
        self, ctx: Ctx, principal: Principal, target: str | None, params: Any
    ) -> dict[str, Any] | None:
        """A `tools/call` made a task: the wire `CreateTaskResult`; None when the call is
        not one (the ordinary handler serves it)."""
        if not isinstance(params, Mapping) or not isinstance(params.get("name"), str):
            return None
        arguments = params.get("arguments") or {}
        if not isinstance(arguments, dict):
            return None
        new = modern(ctx)
        if not new and params.get("task") is None:
            return None
        found = find_target(self.tasks.servers, principal, params["name"], target)
        if found is None:
            return None  # the handler says what is wrong with the name
        if new:
            support, input_first = self.view.task_support(found.server, found.tool)
            if support is None:
                return None
            if not declares_tasks(params):
                if support == "required":
                    raise _missing_capability()
                return None
        elif not isinstance(params["task"], Mapping):
            raise MCPError(INVALID_PARAMS, "params.task must be an object")
        if not new:
            # What the backend asks meanwhile waits for the agent's `tasks/result`.
            job = await self.tasks.start(principal, found, arguments, route="sdk", asks=True)
            assert isinstance(job, Job)
            self._notify_when_done(ctx, principal, job.id)
            return {"task": self._task(job, legacy=True)}
        if SdkInputs.is_retry(params.get("requestState")):
            return None  # a call parked on the SDK path resumes there
        agent = AgentRound(
            params.get("inputResponses"), params.get("requestState"), _backend_meta(params)
        )
        # A tool that gathers input first: a fresh call's first round is made now, and
        # its input_required answer goes to the agent before any task exists.
        started = await self.tasks.start(
            principal, found, arguments, route="sdk", asks=True, agent_round=agent,
            first_round=input_first and not agent.input_responses,
        )  # fmt: skip
        if isinstance(started, dict):
            return {**started, "resultType": "input_required"}
        return {"resultType": "task", **self._task(started)}

    def _notify_when_done(self, ctx: Ctx, principal: Principal, job_id: str) -> None:
        """2025-11-25: tell the session the task's final status (a MAY of the spec)."""
        session = ctx.session

        async def notify() -> None:
            job = await self.tasks.settled(principal, job_id)
            params = self._task(job, legacy=True)
            note = types.TaskStatusNotification(
                params=types.TaskStatusNotificationParams.model_validate(params)
            )
            with contextlib.suppress(Exception):  # the session may be gone: polling remains
                # 2025-11-25 only: the SDK's notification union no longer has it.
                await session.send_notification(note)  # type: ignore[arg-type]

        task = asyncio.create_task(notify(), name=f"task-status-{job_id}")
        self._notifiers.add(task)  # held until done (the loop keeps weak references)
        task.add_done_callback(self._notifiers.discard)

    # --- tasks/* -----------------------------------------------------------------------
    async def request(
        self, ctx: Ctx, principal: Principal, method: str, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Answer ``method`` (one of :data:`TASK_METHODS`) with its wire result."""
        new = modern(ctx)
        if new:
            if method in ("tasks/result", "tasks/list"):
                raise MCPError(METHOD_NOT_FOUND, f"{method} is not a method of 2026-07-28")
            if not declares_tasks(params):
                raise _missing_capability()
        elif method == "tasks/update":
            raise MCPError(METHOD_NOT_FOUND, "tasks/update is a method of 2026-07-28")
        if method == "tasks/list":
            return await self._list(principal, params)
        task_id = params.get("taskId")
        if not isinstance(task_id, str) or not task_id:
            raise MCPError(INVALID_PARAMS, "params.taskId must be a task's id")
        _check_name_header(ctx, task_id)
        job = await self._job(principal, task_id)
        if method == "tasks/get":
            waiting = _STATUS[job.status] == "working"
            pending = await self.tasks.pending(job.id) if waiting else {}
            return self._task(job, legacy=not new, detailed=new, pending=pending)
        if method == "tasks/cancel":
            return await self._cancel(principal, job, new)
        if method == "tasks/update":
            responses = params.get("inputResponses")
            if not isinstance(responses, Mapping):
                raise MCPError(INVALID_PARAMS, "params.inputResponses must be an object")
            try:
                await self.tasks.answer(principal, job.id, dict(responses))
            except AppError as exc:
                raise MCPError(INVALID_PARAMS, exc.message) from None
            return {}
        return await self._result(ctx, principal, job)  # tasks/result, 2025-11-25

    async def _job(self, principal: Principal, task_id: str) -> Job:
        try:
            return await self.tasks.job(principal, task_id)
        except AppError:
            raise MCPError(INVALID_PARAMS, f"unknown task {task_id!r}") from None

    async def _cancel(self, principal: Principal, job: Job, new: bool) -> dict[str, Any]:
        if _STATUS[job.status] in _TERMINAL:
            if new:
                return {}  # idempotent ack
            raise MCPError(INVALID_PARAMS, f"task {job.id!r} has already ended")
        job = await self.tasks.cancel(principal, job.id)
        return {} if new else self._task(job, legacy=True)

    async def _result(self, ctx: Ctx, principal: Principal, job: Job) -> dict[str, Any]:
        """2025-11-25 `tasks/result`: the call's own result once the task ends; what the
        backend asks meanwhile is put to the agent on this request's stream."""
        if _STATUS[job.status] not in _TERMINAL:
            await self._relay_questions(ctx, principal, job.id)
        job = await self.tasks.settled(principal, job.id)
        related = {RELATED_TASK: {"taskId": job.id}}
        status = _STATUS[job.status]
        if status == "completed":
            body = _mcp_result(job.result)
            if "backend_error" not in (job.result or {}):
                return {**body, "_meta": {**body.get("_meta", {}), **related}}
        error = _rpc_error(job)
        raise MCPError(error["code"], error["message"], {**error.get("data", {}), **related})

    async def _relay_questions(self, ctx: Ctx, principal: Principal, job_id: str) -> None:
        """Until the task ends: each question it asks (an `input` event, whichever replica
        runs the call) goes to the agent as a request related to the task (SEP-1686:
        through `tasks/result`), and the answer back to the task."""
        seen: set[str] = set()
        asking: set[asyncio.Task[None]] = set()
        try:
            async for event in self.tasks.jobs.hub.follow(job_id, 0):
                if event.type in TERMINAL_EVENTS:
                    return
                data = event.data if isinstance(event.data, dict) else {}
                key = str(data.get("key"))
                if event.type not in ("input", "answer") or key in seen:
                    continue
                seen.add(key)
                if event.type == "input" and data.get("method") in REQUESTS:
                    ask = self._ask_agent(ctx, principal, job_id, key, data)
                    task = asyncio.create_task(ask, name=f"task-question-{job_id}")
                    asking.add(task)
                    task.add_done_callback(asking.discard)
        finally:
            for task in asking:
                task.cancel()

    async def _ask_agent(
        self, ctx: Ctx, principal: Principal, job_id: str, key: str, data: dict[str, Any]
    ) -> None:
        method = str(data["method"])
        request_type, result_type = REQUESTS[method]
        params = dict(data.get("params") or {})
        params["_meta"] = {**(params.get("_meta") or {}), RELATED_TASK: {"taskId": job_id}}
        try:
            answer = await ctx.session.send_request(
                request_type.model_validate({"method": method, "params": params}),
                result_type,
                metadata=ServerMessageMetadata(related_request_id=ctx.request_id),
            )
            wire = answer.model_dump(by_alias=True, exclude_none=True, mode="json")
            await self.tasks.answer(principal, job_id, {key: wire})
        except (MCPError, AppError) as exc:  # unanswered: the task waits (or times out)
            log.info("a task's question went unanswered", extra={"task": job_id, "error": str(exc)})

    async def _list(self, principal: Principal, params: Mapping[str, Any]) -> dict[str, Any]:
        cursor = params.get("cursor")
        if cursor is not None and not isinstance(cursor, str):
            raise MCPError(INVALID_PARAMS, "params.cursor must be a string")
        try:
            jobs, following = await self.tasks.page(principal, cursor)
        except AppError as exc:
            raise MCPError(INVALID_PARAMS, exc.message) from None
        return {
            "tasks": [self._task(job, legacy=True) for job in jobs],
            **({"nextCursor": following} if following else {}),
        }

    # --- shapes -------------------------------------------------------------------------
    def _task(
        self,
        job: Job,
        *,
        legacy: bool = False,
        detailed: bool = False,
        pending: Mapping[str, Question] | None = None,
    ) -> dict[str, Any]:
        """The task as the era shows it (``detailed``: a 2026-07-28 `tasks/get`;
        ``pending``: the questions it waits on, where the answer shows them)."""
        status = _STATUS[job.status]
        pending = pending if status == "working" and pending else {}
        if pending:
            status = "input_required"
        task: dict[str, Any] = {
            "taskId": job.id,
            "status": status,
            "createdAt": job.created_at.isoformat(),
            "lastUpdatedAt": job.updated_at.isoformat(),
        }
        if job.message:
            task["statusMessage"] = job.message
        elif job.error:
            task["statusMessage"] = str(job.error.get("message", ""))[:500]
        ttl, poll = ("ttl", "pollInterval") if legacy else ("ttlMs", "pollIntervalMs")
        task[ttl] = self.tasks.ttl_ms
        task[poll] = POLL_INTERVAL_MS
        if not detailed:
            return task
        if status == "input_required":
            task["inputRequests"] = {
                key: {"method": asked.method, "params": asked.params}
                for key, asked in pending.items()
            }
        elif status == "completed" and "backend_error" in (job.result or {}):
            task["status"], task["error"] = "failed", _rpc_error(job)
        elif status == "completed":
            task["result"] = _mcp_result(job.result)
        elif status == "failed":
            task["error"] = _rpc_error(job)
        return task


def _mcp_result(body: Any) -> dict[str, Any]:
    """A job's result (the REST body of the call) as the MCP `CallToolResult`."""
    return {k: v for k, v in dict(body or {}).items() if k not in _REST_ONLY}


def _rpc_error(job: Job) -> dict[str, Any]:
    """Why the call failed, as a JSON-RPC error: the backend's own, else the gateway's."""
    backend = (job.result or {}).get("backend_error")
    if isinstance(backend, dict) and isinstance(backend.get("code"), int):
        return backend
    error = job.error or {}
    if job.status == "cancelled":
        return {"code": INVALID_PARAMS, "message": f"task {job.id!r} was cancelled"}
    code = str(error.get("code", "job_failed"))
    message = str(error.get("message", "the call failed"))
    return {"code": INTERNAL_ERROR, "message": message, "data": {"code": code}}


def _backend_meta(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The agent's `_meta` as its task's backend calls carry it (its capabilities, which
    the backend session declares without the tasks extension: sdk_client.py)."""
    meta = params.get("_meta")
    if not isinstance(meta, Mapping):
        return None
    return {k: v for k, v in meta.items() if k != "progressToken"}


def _check_name_header(ctx: Ctx, task_id: str) -> None:
    """SEP-2243: an `Mcp-Name` header on a `tasks/*` request must be its task id."""
    scope = getattr(ctx.request, "scope", None) or {}
    for key, value in scope.get("headers", ()):
        if key == b"mcp-name" and value.decode("latin-1") != task_id:
            raise MCPError(HEADER_MISMATCH, "Mcp-Name header does not match params.taskId")
