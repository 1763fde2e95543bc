"""Job kinds: what a job of each kind runs, where, and how it may be repeated.

A kind is a name, an async handler, the input it accepts and its execution policy
(queue, attempts, time limits). The same registry is read by the gateway (to accept a
submission) and by the worker (to run it). ``noop``, ``echo`` and ``sleep`` ship here:
harmless kinds for tests, the docs and ``bench/jobs.py``; the generators of #19 add
theirs with :meth:`KindRegistry.register`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from gateway.config import Settings
from gateway.db import Database
from gateway.errors import InvalidInput


class JobContext(Protocol):
    """What a running job's handler may do: report, check for cancellation."""

    job_id: str
    attempt: int
    owner_id: str | None  # who submitted the job (None: the system)
    settings: Settings  # the worker's settings
    db: Database  # the worker's database (the handler's own sessions)

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Record how far the job is (0.0 to 1.0), with an optional line of text."""

    async def log(self, message: str, level: str = "info") -> None:
        """Record a line of the job's log."""

    async def emit(self, type: str, data: Any) -> None:
        """Record an event of any non-terminal type (``thinking``, ``token``, ``artifact``…)."""

    @property
    def cancel_requested(self) -> bool:
        """Has someone asked to cancel the job? (Long CPU-bound steps check this.)"""


Handler = Callable[[JobContext, dict[str, Any]], Coroutine[Any, Any, Any]]


@dataclass(frozen=True, slots=True)
class NeedsReview:
    """What a handler returns when a person must approve its result (a generator's
    draft): the job ends in status ``review`` with ``result``, and its kind's
    :class:`Reviewer` settles it later."""

    result: Any


class Reviewer(Protocol):
    """How a kind whose jobs end in ``review`` is settled, in the gateway process (it may
    use pillar services; the worker never calls it)."""

    async def approve(self, principal: Any, job: Any, choice: dict[str, Any]) -> dict[str, Any]:
        """Act on the approved draft of ``job`` (register what it made, as ``principal``)
        and say what was done (the job's ``approved`` result). Raises an AppError (4xx)
        and changes nothing when ``choice`` does not fit."""

    async def revert(self, principal: Any, job: Any, outcome: dict[str, Any]) -> None:
        """Undo :meth:`approve` (the job was settled by someone else meanwhile)."""

    async def reject(self, principal: Any, job: Any, feedback: str | None) -> dict[str, Any] | None:
        """The input of a job that regenerates the draft with ``feedback``, or None when
        rejecting ends it."""


class RetryableError(Exception):
    """A failure worth another attempt (a step that is safe to repeat failed for a
    passing reason): the job is queued again with backoff while attempts remain."""


@dataclass(frozen=True, slots=True)
class JobKind:
    """One kind of job and its execution policy."""

    name: str
    handler: Handler
    input_model: type[BaseModel] | None = None
    queue: str = "jobs"
    max_attempts: int = 1  # > 1: retried on RetryableError, re-queued if its worker is lost
    retry_backoff_seconds: float = 1.0  # doubled at each further attempt
    soft_time_limit: float = 600.0  # the job fails with `timeout` (cooperative)
    hard_time_limit: float = 660.0  # Celery kills the process running it
    submittable: bool = False  # may be submitted as is through POST /api/v1/jobs
    # Runs in the gateway process that submits it, with the work it is given there (a
    # tool call needs that process's backend sessions), never on a Celery worker.
    local: bool = False
    # A short text of the input for lists (default: its fields); never secrets.
    summarize: Callable[[dict[str, Any]], str] | None = None

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        """The input as the handler gets it; :class:`InvalidInput` if it does not fit."""
        if self.input_model is None:
            return data
        try:
            return self.input_model.model_validate(data).model_dump(mode="json")
        except ValueError as exc:
            raise InvalidInput(
                f"input of a {self.name!r} job: {exc}", code="bad_job_input"
            ) from exc

    def summary(self, data: dict[str, Any]) -> str:
        """A short text of the input for lists (never the whole input)."""
        if self.summarize is not None:
            text = self.summarize(data)
        else:
            text = ", ".join(f"{k}={v!r}" for k, v in data.items() if v is not None)
        return text if len(text) <= 200 else text[:199] + "…"


class KindRegistry:
    """The kinds this process knows, by name."""

    def __init__(self) -> None:
        self._kinds: dict[str, JobKind] = {}

    def register(self, kind: JobKind) -> JobKind:
        """Add ``kind``; a name may be registered once."""
        if kind.name in self._kinds:
            raise ValueError(f"job kind {kind.name!r} is registered twice")
        self._kinds[kind.name] = kind
        return kind

    def get(self, name: str) -> JobKind | None:
        """The kind called ``name``, or None."""
        return self._kinds.get(name)

    def names(self) -> list[str]:
        """Every kind's name, sorted."""
        return sorted(self._kinds)

    def queues(self) -> list[str]:
        """Every queue some kind runs on (what an embedded worker consumes)."""
        return sorted({k.queue for k in self._kinds.values()})


# --- kinds for tests, docs and the bench ---------------------------------------------
class EchoInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: Any = None
    fail: str | None = Field(None, max_length=200, description="Fail with this message.")


async def _echo(ctx: JobContext, data: dict[str, Any]) -> Any:
    if data.get("fail"):
        raise RuntimeError(data["fail"])
    return {"value": data.get("value")}


class SleepInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(1.0, ge=0, le=60)
    steps: int = Field(10, ge=1, le=1000)
    flaky: int = Field(
        0, ge=0, le=5, description="Fail (retryably) this many first attempts (tests)."
    )


async def _sleep(ctx: JobContext, data: dict[str, Any]) -> Any:
    if ctx.attempt <= data.get("flaky", 0):
        raise RetryableError(f"attempt {ctx.attempt} fails on purpose")
    steps = int(data["steps"])
    for step in range(steps):
        await asyncio.sleep(float(data["seconds"]) / steps)
        await ctx.progress((step + 1) / steps, f"step {step + 1} of {steps}")
    return {"slept": data["seconds"], "steps": steps}


NOOP = JobKind("noop", _echo, EchoInput, submittable=True, soft_time_limit=60, hard_time_limit=90)
ECHO = JobKind("echo", _echo, EchoInput, submittable=True, soft_time_limit=60, hard_time_limit=90)
SLEEP = JobKind(
    "sleep",
    _sleep,
    SleepInput,
    submittable=True,
    max_attempts=3,
    retry_backoff_seconds=0.2,
    soft_time_limit=120,
    hard_time_limit=150,
)


def builtin_kinds() -> KindRegistry:
    """A registry with the kinds every gateway has."""
    registry = KindRegistry()
    for kind in (NOOP, ECHO, SLEEP):
        registry.register(kind)
    return registry
