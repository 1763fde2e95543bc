"""Tool calls as jobs: an async REST call (`tools/execute` with `"async": true`) and an
MCP task (a task-augmented `tools/call`) are one thing, made here.

The call itself is the ordinary one: :meth:`ServerService.call_body` runs the call
pipeline (authorize → limit → cache → breaker → backend → record), audited with the
route of the entry point that started it. Only when it runs differs: the entry point
gets a job id at once, and the call runs on as a *local* job of the jobs core
(gateway/jobs/local.py) in this gateway process, which holds the pooled backend
sessions a Celery worker could not reach (stdio children, in-process generated
servers). The jobs core owns everything else: the row, the ordered events (backend
progress becomes `progress` events, log messages `log` events), the result and its
TTL, cancellation (the backend call is cancelled: the backend session sends
`notifications/cancelled`), the SSE stream and the reaper.

What a backend asks mid-call (elicitation, sampling, roots) cannot reach an agent
that is not waiting on the call: such a question is parked here as an *input
request* of the task, shown by `tasks/get` (status `input_required`) and answered by
`tasks/update`. Parked questions live in this process's memory (the process running
the call); a gateway replica that does not run the call answers `tasks/get` from the
database without them.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mcp import types
from pydantic import BaseModel

from gateway.auth.principal import Principal
from gateway.errors import InvalidInput
from gateway.jobs.kinds import JobContext, JobKind
from gateway.jobs.models import Job
from gateway.jobs.service import JobService
from gateway.servers.calls import CallTarget, qualified
from gateway.servers.mcp.sdk_input import REQUESTS
from gateway.servers.pipeline import CallContext, Route
from gateway.servers.service import ServerService

# Seconds a tool call may run as a job (its backend timeout is the caller's, as for
# any call; this bounds the job).
TASK_TIME_LIMIT = 24 * 3600.0


async def _elsewhere(ctx: JobContext, data: dict[str, Any]) -> Any:
    raise RuntimeError("a tool_call job runs in the gateway process that started it")


TOOL_CALL = JobKind(
    "tool_call",
    _elsewhere,
    local=True,
    soft_time_limit=TASK_TIME_LIMIT,
    hard_time_limit=TASK_TIME_LIMIT + 60,
)


@dataclass
class InputRequest:
    """A question the backend asked during a task, waiting for the agent's answer."""

    method: str
    params: dict[str, Any]
    result_type: type[BaseModel]
    answer: asyncio.Future[Any] = field(default_factory=asyncio.Future)


@dataclass
class TaskInputs:
    """The questions one running task waits on, by the key the agent answers with."""

    pending: dict[str, InputRequest] = field(default_factory=dict)
    changed: Callable[[], None] | None = None


class JobRelay:
    """The relay (runtimes/relay.py) of a call that runs as a job: progress and log
    messages become job events; questions become the task's input requests."""

    modern = False
    wants_progress = True
    input_round = None
    askable = True

    def __init__(self, ctx: JobContext, inputs: TaskInputs, keys: itertools.count[int]) -> None:
        self.ctx = ctx
        self.inputs = inputs
        self._keys = keys

    async def request(self, method: str, params: Any) -> Any:
        if method not in REQUESTS:
            raise InvalidInput(f"{method} cannot be relayed to a task's agent")
        key = f"input-{next(self._keys)}"
        wire = (
            params.model_dump(by_alias=True, exclude_none=True, mode="json")
            if isinstance(params, BaseModel)
            else dict(params or {})
        )
        asked = InputRequest(method, wire, REQUESTS[method][1])
        self.inputs.pending[key] = asked
        await self.ctx.emit("artifact", {"input_required": {key: {"method": method}}})
        try:
            return await asked.answer
        finally:
            self.inputs.pending.pop(key, None)

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        data = params.data if isinstance(params.data, str) else repr(params.data)
        await self.ctx.log(data, str(params.level))

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        if total:
            await self.ctx.progress(progress / total, message)
        else:  # no total: a count, not a fraction (the job's own progress stays unset)
            data: dict[str, Any] = {"progress": None, "count": progress}
            if message is not None:
                data["message"] = message[:500]
            await self.ctx.emit("progress", data)


class CallTasks:
    """Starts tool calls as jobs and answers what their tasks ask."""

    def __init__(self, servers: ServerService, jobs: JobService) -> None:
        self.servers = servers
        self.jobs = jobs
        if jobs.kinds.get(TOOL_CALL.name) is None:
            jobs.kinds.register(TOOL_CALL)
        self.inputs: dict[str, TaskInputs] = {}
        self._keys = itertools.count(1)

    @property
    def ttl_ms(self) -> int:
        """How long a finished task's result is kept (MCPGW_JOBS_RESULT_TTL_HOURS)."""
        return int(self.jobs.result_ttl * 1000)

    async def start(
        self,
        principal: Principal,
        target: CallTarget,
        arguments: dict[str, Any],
        *,
        route: Route,
        timeout: float | None = None,
    ) -> Job:
        """Record the call as a job and start it; the job (readable at once)."""
        servers = self.servers
        inputs = TaskInputs()

        async def work(ctx: JobContext, _: dict[str, Any]) -> Any:
            self.inputs[ctx.job_id] = inputs
            relay = JobRelay(ctx, inputs, self._keys)
            started = time.perf_counter()
            try:
                call_ctx = CallContext(route, timeout=timeout, relay=relay)
                body = await servers.call_body(principal, target, arguments, call_ctx)
            finally:
                self.inputs.pop(ctx.job_id, None)
            body["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
            return body

        name = qualified(target.server, target.tool)
        return await self.jobs.submit(principal, TOOL_CALL.name, {"tool": name}, work)

    async def execute(
        self, principal: Principal, tool: str, arguments: dict[str, Any], timeout: float | None
    ) -> Job:
        """REST `tools/execute` with `"async": true`: resolve ``{server}__{tool}`` (an
        unknown one is refused now, 404), then :meth:`start` it."""
        target = self.servers.resolve(principal, tool)
        return await self.start(principal, target, arguments, route="rest", timeout=timeout)

    async def job(self, principal: Principal, job_id: str) -> Job:
        """The caller's tool-call job (:class:`NotFound` for any other id)."""
        return await self.jobs.own(principal, job_id, TOOL_CALL.name)

    async def cancel(self, principal: Principal, job_id: str) -> Job:
        """Cancel the caller's tool-call job (the backend call is cancelled)."""
        await self.job(principal, job_id)
        return await self.jobs.cancel(principal, job_id, check=False)

    def pending(self, job_id: str) -> dict[str, InputRequest]:
        """The questions the task waits on (those asked in this process)."""
        found = self.inputs.get(job_id)
        return dict(found.pending) if found is not None else {}

    async def answer(self, principal: Principal, job_id: str, responses: dict[str, Any]) -> None:
        """Deliver the agent's answers (by input key); keys not pending are ignored."""
        await self.job(principal, job_id)
        for key, value in responses.items():
            asked = self.pending(job_id).get(key)
            if asked is None or asked.answer.done():
                continue
            try:
                asked.answer.set_result(asked.result_type.model_validate(value))
            except ValueError as exc:
                raise InvalidInput(f"inputResponses[{key!r}] is not a {asked.method} result") from (
                    exc
                )
