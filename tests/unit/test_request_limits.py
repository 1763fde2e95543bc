"""Request limits of a server and its tools (gateway/servers/limits.py): what is stored,
how a call's limits resolve (tool → server → global), and the ``size`` stage."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from gateway.auth.principal import Principal
from gateway.servers.calls import CallTarget
from gateway.servers.controls import ArgumentsSize, ArgumentsTooLarge
from gateway.servers.limits import LimitsIn, RequestLimits, arguments_size
from gateway.servers.pipeline import Call

DEV = Principal("u", "u@x", "u", "developer", "k", ("*",))
LIMITS = {
    "call_timeout_seconds": 30,
    "max_request_bytes": 100,
    "tools": {"slow": {"call_timeout_seconds": 300}, "tiny": {"max_request_bytes": 10}},
}


def _call(tool: str, arguments: dict[str, object], limits: RequestLimits | None) -> Call:
    runtime = SimpleNamespace(spec=SimpleNamespace(limits=limits))
    return Call(DEV, CallTarget("srv", tool, runtime), arguments, "rest")  # type: ignore[arg-type]


def test_only_what_is_set_is_stored() -> None:
    assert LimitsIn.model_validate({}).stored() is None
    assert LimitsIn.model_validate({"tools": {"a": {}}}).stored() is None
    assert LimitsIn.model_validate(LIMITS).stored() == LIMITS


@pytest.mark.parametrize(
    "bad",
    [
        {"call_timeout_seconds": 0},
        {"call_timeout_seconds": 3601},
        {"max_request_bytes": 0},
        {"timeout": 1},
        {"tools": {"a": {"timeout": 1}}},
        {"tools": {"": {"call_timeout_seconds": 1}}},
    ],
)
def test_bad_limits_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        LimitsIn.model_validate(bad)


def test_a_tools_own_value_then_the_servers_then_the_global() -> None:
    limits = RequestLimits.parse(LIMITS)
    assert limits is not None
    assert limits.timeout_for("slow", 60) == 300
    assert limits.timeout_for("tiny", 60) == 30  # its own size, the server's timeout
    assert limits.max_bytes_for("tiny") == 10 and limits.max_bytes_for("slow") == 100
    only_tools = RequestLimits.parse({"tools": {"slow": {"call_timeout_seconds": 5}}})
    assert only_tools is not None and not only_tools.bounds_size
    assert only_tools.timeout_for("other", 60) == 60  # the global
    assert only_tools.max_bytes_for("other") is None
    assert RequestLimits.parse(None) is None and RequestLimits.parse({}) is None


def test_arguments_are_measured_as_compact_json() -> None:
    assert arguments_size({"text": "é"}) == len('{"text":"é"}'.encode())
    assert arguments_size({"n": 2**70}) == len('{"n":1180591620717411303424}')


async def test_the_size_stage_refuses_only_what_is_over_its_limit() -> None:
    stage = ArgumentsSize()
    limits = RequestLimits.parse(LIMITS)
    await stage.enter(_call("tiny", {"a": 1}, limits))  # 7 bytes: under 10
    await stage.enter(_call("slow", {"a": "x" * 80}, limits))  # under the server's 100
    await stage.enter(_call("tiny", {"a": "x" * 1000}, None))  # no limits: nothing checked
    with pytest.raises(ArgumentsTooLarge) as refused:
        await stage.enter(_call("tiny", {"a": "x" * 10}, limits))
    assert refused.value.status_code == 413 and refused.value.code == "payload_too_large"
    assert refused.value.rpc_data() == {
        "code": "payload_too_large",
        "server": "srv",
        "tool": "tiny",
        "limit": 10,
        "size": 18,
    }
    assert "tool 'tiny'" in refused.value.message
    with pytest.raises(ArgumentsTooLarge, match="for its tools"):
        await stage.enter(_call("slow", {"a": "x" * 100}, limits))
