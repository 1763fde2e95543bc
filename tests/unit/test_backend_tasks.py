"""Units of runtimes/backend_tasks.py: which calls become a backend's task, how a
2026-07-28 tool list is read, and what of a task's end reaches the caller."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import types

from gateway.servers.runtimes.backend_tasks import (
    _call_result,
    _interval,
    requires_task,
    runs_as_task,
    task_support,
    undeclared_as_optional,
)
from gateway.servers.runtimes.base import BackendError
from gateway.servers.runtimes.sdk_client import TASKS_EXTENSION, _without_tasks

SCHEMA = {"type": "object"}


def tool(**extra: Any) -> types.Tool:
    return types.Tool.model_validate({"name": "t", "inputSchema": SCHEMA, **extra})


class Relay:
    def __init__(self, long_running: bool) -> None:
        self.long_running = long_running


def test_task_support_read_from_either_era() -> None:
    assert task_support(tool(execution={"taskSupport": "required"})) == ("required", False)
    declared = {TASKS_EXTENSION: {"taskSupport": "optional", "inputFirst": True}}
    assert task_support(tool(_meta=declared)) == ("optional", True)
    assert task_support(tool(execution={"taskSupport": "forbidden"})) == (None, False)
    assert task_support(tool()) == (None, False)


def test_a_tasks_backends_undeclared_tools_may_run_as_tasks() -> None:
    marked = undeclared_as_optional(tool(_meta={"fastmcp": {"tags": []}}))
    assert task_support(marked) == ("optional", False)
    assert marked.meta is not None and marked.meta["fastmcp"] == {"tags": []}
    required = tool(execution={"taskSupport": "required"})
    assert undeclared_as_optional(required) is required
    forbidden = tool(execution={"taskSupport": "forbidden"})
    assert undeclared_as_optional(forbidden) is forbidden


@pytest.mark.parametrize(
    ("support", "relay", "expected"),
    [
        ("required", None, True),
        ("required", Relay(False), True),
        ("optional", None, False),
        ("optional", Relay(False), False),
        ("optional", Relay(True), True),
        (None, Relay(True), False),
    ],
)
def test_which_calls_run_as_backend_tasks(
    support: str | None, relay: Relay | None, expected: bool
) -> None:
    assert runs_as_task(support, relay) is expected  # type: ignore[arg-type]


def test_a_refusal_for_want_of_the_tasks_extension() -> None:
    needs = {"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}}
    assert requires_task(types.ErrorData(code=-32021, message="m", data=needs))
    assert not requires_task(types.ErrorData(code=-32021, message="m", data=None))
    other = {"requiredCapabilities": {"extensions": {"io.example/x": {}}}}
    assert not requires_task(types.ErrorData(code=-32021, message="m", data=other))
    assert not requires_task(types.ErrorData(code=-32602, message="m", data=needs))


def test_the_backends_task_reference_is_not_passed_on() -> None:
    body = {
        "content": [{"type": "text", "text": "ok"}],
        "resultType": "complete",
        "_meta": {"io.modelcontextprotocol/related-task": {"taskId": "backend-1"}, "k": 1},
    }
    result = _call_result(body)
    assert result.meta == {"k": 1}
    only = _call_result({"content": [], "_meta": {"io.modelcontextprotocol/related-task": {}}})
    assert only.meta is None
    with pytest.raises(BackendError, match="not a tool result"):
        _call_result({"content": "not a list"})
    with pytest.raises(BackendError, match="without a result"):
        _call_result(None)


def test_poll_intervals_are_kept_within_reason() -> None:
    assert _interval({"pollIntervalMs": 500}, "pollIntervalMs") == 0.5
    assert _interval({"pollIntervalMs": 0}, "pollIntervalMs") == 1.0
    assert _interval({"pollIntervalMs": 600_000}, "pollIntervalMs") == 5.0
    assert _interval({"pollInterval": 1}, "pollInterval") == 0.02
    assert _interval({}, "pollInterval") == 1.0


def test_an_agents_tasks_extension_is_never_declared_to_a_backend() -> None:
    caps = {"extensions": {TASKS_EXTENSION: {}, "io.example/x": {"a": 1}}, "sampling": {}}
    assert _without_tasks(caps) == {"extensions": {"io.example/x": {"a": 1}}, "sampling": {}}
    plain = {"sampling": {}}
    assert _without_tasks(plain) is plain
