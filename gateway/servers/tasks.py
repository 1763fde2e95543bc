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
`tasks/update`. Questions and answers are events of the job (`input`, `answer`), so
any gateway replica serves them: the agent may ask and answer through another
replica than the one running the call, which follows its job's answers (the jobs
core's event hub: Redis wake-ups, or a short poll) while a question is open.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mcp import types
from pydantic import BaseModel

from gateway.auth.principal import Principal
from gateway.errors import InvalidInput
from gateway.jobs.kinds import JobContext, JobKind
from gateway.jobs.models import TERMINAL, TERMINAL_EVENTS, Job
from gateway.jobs.service import JobService
from gateway.servers import rest_calls
from gateway.servers.calls import CallTarget, qualified
from gateway.servers.mcp.sdk_input import REQUESTS
from gateway.servers.pipeline import CallContext, Route
from gateway.servers.runtimes.relay import no_relay
from gateway.servers.service import ServerService

# Seconds a tool call may run as a job: the backend timeout of a call made as a job
# unless its caller gives one (REST `timeout`), and the job's own limit.
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


@dataclass(frozen=True)
class Question:
    """A question of a task's, as any replica reads it from the job's events."""

    method: str
    params: dict[str, Any]
    typed: bool  # asked mid-call: the answer is read as the method's result type

    @property
    def result_type(self) -> type[BaseModel] | None:
        """What the answer must validate as (None: passed on as it is)."""
        return REQUESTS[self.method][1] if self.typed and self.method in REQUESTS else None


@dataclass
class InputRequest:
    """A question the backend asked during a task, waiting for the agent's answer:
    asked mid-call (``result_type``: the typed result to read the answer as) or in an
    `input_required` result of the backend's (None: the answer goes back as it is)."""

    method: str
    params: dict[str, Any]
    result_type: type[BaseModel] | None
    answer: asyncio.Future[Any] = field(default_factory=asyncio.Future)


@dataclass
class AgentRound:
    """What a 2026-07-28 backend gets with a call (relay.InputRound): the answers to its
    last `input_required` result, its `requestState`, and the agent's `_meta`."""

    input_responses: Any = None
    request_state: Any = None
    meta: Any = None


class JobRelay:
    """The relay (runtimes/relay.py) of a call that runs as a job: progress and log
    messages become job events; a question the backend asks mid-call becomes an input
    request of the task (``asks``), or is refused when nobody could answer it."""

    wants_progress = True
    askable = True
    long_running = True

    def __init__(
        self,
        tasks: CallTasks,
        *,
        asks: bool,
        input_round: AgentRound | None = None,
    ) -> None:
        self.ctx: JobContext | None = None  # set once the call is a job
        self.pending: dict[str, InputRequest] = {}
        self.asks = asks
        self._tasks = tasks
        # 2026-07-28: the backend's input_required results come back to the task (which
        # asks its agent) rather than being answered by the gateway's own client.
        self.input_round = input_round
        self.modern = input_round is not None

    async def request(self, method: str, params: Any) -> Any:
        if not self.asks or method not in REQUESTS:
            return no_relay(method)
        wire = (
            params.model_dump(by_alias=True, exclude_none=True, mode="json")
            if isinstance(params, BaseModel)
            else dict(params or {})
        )
        key = f"input-{next(self._tasks.keys)}"
        asked = InputRequest(method, wire, REQUESTS[method][1])
        try:
            return await self.put(key, asked)
        finally:
            self.pending.pop(key, None)

    async def put(self, key: str, asked: InputRequest) -> Any:
        """Ask the task's agent ``asked`` under ``key``; its answer, from any replica."""
        self.pending[key] = asked
        if self.ctx is not None:
            data = {"key": key, "method": asked.method, "params": asked.params,
                    "typed": asked.result_type is not None}  # fmt: skip
            await self.ctx.emit("input", data)
            self._tasks.follow_answers(self.ctx.job_id, self.pending)
        return await asked.answer

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        if self.ctx is not None:
            data = params.data if isinstance(params.data, str) else repr(params.data)
            await self.ctx.log(data, str(params.level))

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        if self.ctx is None:
            return
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
        self.keys = itertools.count(1)  # input keys, unique in this process
        self._followers: dict[str, asyncio.Task[None]] = {}  # job id → its answers followed

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
        asks: bool = False,
        agent_round: AgentRound | None = None,
        first_round: bool = False,
    ) -> Job | dict[str, Any]:
        """Record the call as a job and start it; the job (readable at once).

        ``asks``: what the backend asks mid-call waits for the agent (an MCP task's
        input requests); else it is refused. ``agent_round``: the call is a 2026-07-28
        agent's (its answers and `_meta` go to the backend, whose `input_required`
        results become the task's input requests). ``first_round``: the call's first round
        is made before it becomes a job, and a backend that asks for input then is
        answered as a plain `input_required` result (a dict: no job), so the agent
        answers before the task exists (SEP-2663: MRTR, then the task)."""
        relay = JobRelay(self, asks=asks, input_round=agent_round)
        timeout = timeout or TASK_TIME_LIMIT
        first: dict[str, Any] | None = None
        if first_round:
            first = await self._round(principal, target, arguments, route, timeout, relay)
            if "inputRequests" in first:
                return first

        async def work(ctx: JobContext, _: dict[str, Any]) -> Any:
            relay.ctx = ctx
            started = time.perf_counter()
            try:
                body = first or await self._round(
                    principal, target, arguments, route, timeout, relay
                )
                rounds = 0
                while "inputRequests" in body:  # a 2026-07-28 backend asks: so does the task
                    rounds += 1
                    relay.input_round = await self._ask(relay, body, rounds, agent_round)
                    body = await self._round(principal, target, arguments, route, timeout, relay)
            finally:
                follower = self._followers.pop(ctx.job_id, None)
                if follower is not None:
                    follower.cancel()
            body["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
            return body

        name = qualified(target.server, target.tool)
        return await self.jobs.submit(principal, TOOL_CALL.name, {"tool": name}, work)

    async def _round(
        self,
        principal: Principal,
        target: CallTarget,
        arguments: dict[str, Any],
        route: Route,
        timeout: float,
        relay: JobRelay,
    ) -> dict[str, Any]:
        """One backend round of the call, through the call pipeline."""
        call_ctx = CallContext(route, timeout=timeout, relay=relay)
        return await rest_calls.call_body(self.servers, principal, target, arguments, call_ctx)

    @staticmethod
    async def _ask(
        relay: JobRelay, body: dict[str, Any], rounds: int, agent: AgentRound | None
    ) -> AgentRound:
        """Put a backend's `input_required` result to the task's agent; the next round
        once every request is answered. Keys are unique over the task's life."""
        asked: dict[str, tuple[str, InputRequest]] = {}
        for key, request in dict(body.get("inputRequests") or {}).items():
            ours = key if rounds == 1 else f"{key}.{rounds}"
            method = str(request.get("method", "")) if isinstance(request, dict) else ""
            params = request.get("params", {}) if isinstance(request, dict) else {}
            asked[ours] = (key, InputRequest(method, dict(params or {}), None))
        waits = [relay.put(ours, request) for ours, (_, request) in asked.items()]
        answered = await asyncio.gather(*waits)
        answers = {key: answer for (key, _), answer in zip(asked.values(), answered, strict=True)}
        meta = agent.meta if agent is not None else None
        return AgentRound(answers, body.get("requestState"), meta)

    def follow_answers(self, job_id: str, pending: dict[str, InputRequest]) -> None:
        """While ``job_id`` runs here, hand its agent's answers (`answer` events, written
        by whichever replica took the agent's `tasks/update`) to its open questions."""
        if job_id in self._followers:
            return

        async def follow() -> None:
            async for event in self.jobs.hub.follow(job_id, 0):
                if event.type in TERMINAL_EVENTS:
                    return
                data = event.data if isinstance(event.data, dict) else {}
                asked = pending.get(str(data.get("key"))) if event.type == "answer" else None
                if asked is None or asked.answer.done():
                    continue
                response = data.get("response")
                try:
                    typed = asked.result_type
                    asked.answer.set_result(
                        response if typed is None else typed.model_validate(response)
                    )
                except ValueError:  # checked when written: a stored answer is sound
                    continue

        self._followers[job_id] = asyncio.create_task(follow(), name=f"answers-{job_id}")

    async def execute(
        self, principal: Principal, tool: str, arguments: dict[str, Any], timeout: float | None
    ) -> Job:
        """REST `tools/execute` with `"async": true`: resolve ``{server}__{tool}`` (an
        unknown one is refused now, 404), then :meth:`start` it."""
        target = self.servers.resolve(principal, tool)
        job = await self.start(principal, target, arguments, route="rest", timeout=timeout)
        assert isinstance(job, Job)  # no first round that could answer instead
        return job

    async def job(self, principal: Principal, job_id: str) -> Job:
        """The caller's tool-call job (:class:`NotFound` for any other id)."""
        return await self.jobs.own(principal, job_id, TOOL_CALL.name)

    async def cancel(self, principal: Principal, job_id: str) -> Job:
        """Cancel the caller's tool-call job (the backend call is cancelled)."""
        await self.job(principal, job_id)
        return await self.jobs.cancel(principal, job_id, check=False)

    async def settled(self, principal: Principal, job_id: str) -> Job:
        """The caller's job once it has ended (at once if it has)."""
        job = await self.job(principal, job_id)
        if job.status in TERMINAL:
            return job
        async for event in self.jobs.hub.follow(job_id, 0):
            if event.type in TERMINAL_EVENTS:
                break
        return await self.job(principal, job_id)

    async def page(
        self, principal: Principal, cursor: str | None, limit: int = 50
    ) -> tuple[list[Job], str | None]:
        """The caller's tool-call jobs, newest first, from ``cursor`` (the next page's
        cursor, or None at the end)."""
        try:
            before = datetime.fromisoformat(cursor) if cursor else None
        except ValueError:
            raise InvalidInput(f"bad cursor {cursor!r}") from None
        jobs = await self.jobs.list(
            principal, kind=TOOL_CALL.name, limit=limit, before=before, check=False
        )
        following = jobs[-1].created_at.isoformat() if len(jobs) == limit else None
        return jobs, following

    async def pending(self, job_id: str) -> dict[str, Question]:
        """The questions the task waits on (from its events: asked on any replica)."""
        open_: dict[str, Question] = {}
        for event in await self.jobs.events_of(job_id, ("input", "answer")):
            data = event.data if isinstance(event.data, dict) else {}
            key = str(data.get("key"))
            if event.type == "answer":
                open_.pop(key, None)
                continue
            params = data.get("params")
            open_[key] = Question(
                str(data.get("method", "")),
                params if isinstance(params, dict) else {},
                data.get("typed") is True,
            )
        return open_

    async def answer(self, principal: Principal, job_id: str, responses: dict[str, Any]) -> None:
        """Deliver the agent's answers (by input key) to the replica running the task;
        keys not pending are ignored, an answered one leaves the task's input requests
        at once."""
        await self.job(principal, job_id)
        pending = await self.pending(job_id)
        answers: list[tuple[str, Any]] = []
        for key, value in responses.items():
            asked = pending.get(key)
            if asked is None:
                continue
            typed = asked.result_type
            if typed is not None:
                try:
                    typed.model_validate(value)
                except ValueError:
                    raise InvalidInput(
                        f"inputResponses[{key!r}] is not a {asked.method} result"
                    ) from None
            answers.append((key, value))
        for key, value in answers:
            await self.jobs.note(job_id, "answer", {"key": key, "response": value})
