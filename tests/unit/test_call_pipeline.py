"""The call pipeline's rules (gateway/servers/pipeline.py), without a backend.

Stages are entered in one order and left in reverse, whatever the entry point; a
refusal or a stage's answer never reaches the backend, and the record stage sees every
verdict but a hand-over to another path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest

from gateway.auth.principal import Principal
from gateway.servers.calls import CallTarget
from gateway.servers.pipeline import (
    STAGES,
    Authorize,
    Call,
    CallDenied,
    NotSent,
    Pipeline,
    Record,
    StageDefaults,
)

DEV = Principal("u", "u@x", "u", "developer", "k", ("*",))
VIEWER = Principal("v", "v@x", "v", "viewer", "k2", ("*",))


def _call(principal: Principal = DEV) -> Call:
    return Call(principal, CallTarget("srv", "tool", None), {"a": 1}, "sdk")  # type: ignore[arg-type]


class Trace:
    """A stage that notes when it is entered and left."""

    def __init__(self, name: str, seen: list[str]) -> None:
        self.name, self.seen = name, seen

    async def enter(self, call: Call) -> None:
        self.seen.append(self.name)

    def leave(self, call: Call, error: BaseException | None) -> None:
        self.seen.append(f"/{self.name}")


def _recorded() -> tuple[Record, list[tuple[str, str, str]]]:
    rows: list[tuple[str, str, str]] = []
    return Record(lambda s, _tool, r, _secs, o, _trace, _bytes: rows.append((s, r, o))), rows


async def test_stages_nest_in_one_order_whatever_order_they_were_installed() -> None:
    seen: list[str] = []
    pipeline = Pipeline()
    for name in ("breaker", "cache", "record", "limit", "size", "authorize", "transform"):
        pipeline.install(name, Trace(name, seen))

    async def backend(call: Call) -> str:
        seen.append("backend")
        return "result"

    assert await pipeline.run(_call(), backend) == "result"
    assert seen == [
        *("record", "transform", "authorize", "size", "limit", "cache", "breaker"),
        "backend",
        *("/breaker", "/cache", "/limit", "/size", "/authorize", "/transform", "/record"),
    ]
    assert pipeline.names == STAGES


async def test_an_empty_pipeline_is_the_backend_call() -> None:
    pipeline = Pipeline()
    assert pipeline.names == ("backend",)

    async def backend(call: Call) -> int:
        return 42

    assert await pipeline.run(_call(), backend) == 42


async def test_a_refusal_leaves_only_the_stages_entered_before_it() -> None:
    seen: list[str] = []
    pipeline = Pipeline({"authorize": Authorize(), "record": Trace("record", seen)})
    pipeline.install("cache", Trace("cache", seen))

    async def backend(call: Call) -> None:
        raise AssertionError("the backend was called")

    with pytest.raises(CallDenied):
        await pipeline.run(_call(VIEWER), backend)
    assert seen == ["record", "/record"]  # the cache after authorize was never entered


def test_only_known_slots_can_be_filled() -> None:
    with pytest.raises(ValueError, match="no pipeline stage named 'audit'"):
        Pipeline().install("audit", Authorize())
    with pytest.raises(ValueError, match="no pipeline stage named 'backend'"):
        Pipeline().install("backend", Authorize())  # the entry point's own


async def test_a_refused_call_never_reaches_the_backend_and_is_recorded() -> None:
    record, rows = _recorded()
    pipeline = Pipeline({"authorize": Authorize(), "record": record})
    reached = False

    async def backend(call: Call) -> None:
        nonlocal reached
        reached = True

    with pytest.raises(CallDenied, match="needs 'tools:execute'"):
        await pipeline.run(_call(VIEWER), backend)
    assert not reached
    assert rows == [("srv", "sdk", "denied")]


async def test_outcomes_are_recorded_as_the_backend_stage_set_them() -> None:
    record, rows = _recorded()
    pipeline = Pipeline({"authorize": Authorize(), "record": record})

    async def tool_error(call: Call) -> str:
        call.outcome = "tool_error"
        return "failed"

    async def handed_over(call: Call) -> None:
        raise NotSent

    async def cancelled(call: Call) -> None:
        raise asyncio.CancelledError

    assert await pipeline.run(_call(), tool_error) == "failed"
    with pytest.raises(NotSent):
        await pipeline.run(_call(), handed_over)  # the other path records it
    with pytest.raises(asyncio.CancelledError):
        await pipeline.run(_call(), cancelled)
    assert rows == [("srv", "sdk", "tool_error"), ("srv", "sdk", "cancelled")]


async def test_a_stage_may_answer_without_the_backend() -> None:
    """What a cache stage will do: the answer is recorded like any other."""
    record, rows = _recorded()

    class Cached(StageDefaults):
        async def enter(self, call: Call) -> None:
            call.outcome, call.answer = "ok", "from cache"

    pipeline = Pipeline({"cache": Cached(), "record": record})

    async def backend(call: Call) -> str:
        raise AssertionError("the backend was called")

    assert await pipeline.run(_call(), backend) == "from cache"
    assert rows == [("srv", "sdk", "ok")]


async def test_a_plain_enter_is_awaited_only_when_it_returns_something() -> None:
    """A stage that seldom waits (the record stage while the audit queue is full, the
    authorize stage while a user approves) enters as a plain function and returns a
    coroutine only then; the pipeline awaits exactly that."""
    seen: list[str] = []

    class Sometimes(StageDefaults):
        wait = False

        def enter(self, call: Call) -> Awaitable[None] | None:
            seen.append("enter")
            return self._waited() if self.wait else None

        async def _waited(self) -> None:
            await asyncio.sleep(0)
            seen.append("waited")

    stage = Sometimes()
    pipeline = Pipeline({"limit": stage})

    async def backend(call: Call) -> str:
        seen.append("backend")
        return "ok"

    assert await pipeline.run(_call(), backend) == "ok"
    stage.wait = True
    assert await pipeline.run(_call(), backend) == "ok"
    assert seen == ["enter", "backend", "enter", "waited", "backend"]


async def test_halves_left_to_the_defaults_are_never_called() -> None:
    """StageDefaults' halves do nothing: the pipeline skips them (a call each saved);
    the other halves still run, in order, as far as the call got."""
    seen: list[str] = []

    class EnterOnly(StageDefaults):
        async def enter(self, call: Call) -> None:
            seen.append("cache")

    class LeaveOnly(StageDefaults):
        def leave(self, call: Call, error: BaseException | None) -> None:
            seen.append("/limit")

    pipeline = Pipeline({"cache": EnterOnly(), "limit": LeaveOnly(), "record": Trace("r", seen)})

    async def backend(call: Call) -> str:
        seen.append("backend")
        return "ok"

    assert await pipeline.run(_call(), backend) == "ok"
    assert seen == ["r", "cache", "backend", "/limit", "/r"]
    seen.clear()
    with pytest.raises(CallDenied):  # refused before the limit and cache stages
        await Pipeline({"authorize": Authorize(), "limit": LeaveOnly()}).run(_call(VIEWER), backend)
    assert seen == []


async def test_the_record_stage_waits_for_room_only_while_the_audit_queue_is_full() -> None:
    """A stand-in audit log (its queue's fullness is all the stage reads; the real
    writer's waiting is tested in tests/integration/audit/test_writer.py)."""

    class Audit:
        def __init__(self) -> None:
            self.full, self.waited = False, 0
            self.rows: list[Any] = []

        async def room(self) -> None:
            self.waited += 1

        def record(self, row: Any) -> None:
            self.rows.append(row)

    audit = Audit()
    pipeline = Pipeline({"record": Record(None, audit)})  # type: ignore[arg-type]

    async def backend(call: Call) -> str:
        call.outcome = "ok"
        return "ok"

    await pipeline.run(_call(), backend)
    assert audit.waited == 0
    audit.full = True
    await pipeline.run(_call(), backend)
    assert audit.waited == 1 and len(audit.rows) == 2
