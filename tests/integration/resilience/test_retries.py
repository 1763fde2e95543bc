"""Retries only where repeating is safe (tests/fixtures/faulty_backend.py counts requests
and executions): a tool without hints is executed exactly once even when its answer is
lost; a `readOnlyHint` (or `idempotentHint`) tool is retried and succeeds; an admin's
`idempotent` says otherwise than the hints; /metrics counts retries. On the fast path
and the SDK path in both eras, and REST."""

from __future__ import annotations

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from tests.integration.mcp.test_endpoint import connect
from tests.integration.resilience.conftest import AUTH, PATHS, call, control, counts, register
from tests.support import Server


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", ["after", "midstream"])
async def test_a_call_not_safe_to_repeat_runs_once_even_when_its_answer_is_lost(
    gateway: Server, backend: str, path: str, mode: str
) -> None:
    control(backend, reset=True)
    server = register(gateway, backend)
    control(backend, tool="write", mode=mode, times=1)  # runs, then the answer is lost
    answer = await call(gateway, path, f"{server}__write")
    assert answer.is_error, answer
    assert counts(backend) == {"requests": {"write": 1}, "executions": {"write": 1}}
    # The next call is a new call (the agent's choice), and it works.
    assert (await call(gateway, path, f"{server}__write")).text == "write #2"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("tool", "mode"), [("read", "after"), ("put", "midstream")])
async def test_a_safe_call_is_retried_and_succeeds(
    gateway: Server, backend: str, path: str, tool: str, mode: str
) -> None:
    control(backend, reset=True)
    server = register(gateway, backend)
    control(backend, tool=tool, mode=mode, times=2)
    answer = await call(gateway, path, f"{server}__{tool}")
    assert not answer.is_error and answer.text == f"{tool} #3", answer
    assert counts(backend)["requests"][tool] == 3  # two retries (3 attempts by default)
    text = httpx.get(f"{gateway.url}/metrics", headers=AUTH).text
    assert f'mcpgw_call_retries_total{{server="{server}"}} 2.0' in text


@pytest.mark.parametrize("path", ["fast-2026", "sdk-2025", "rest"])
async def test_attempts_are_bounded(gateway: Server, backend: str, path: str) -> None:
    control(backend, reset=True)
    server = register(gateway, backend, {"retries": {"attempts": 2}})
    control(backend, tool="read", mode="refuse", times=-1)
    assert (await call(gateway, path, f"{server}__read")).is_error
    assert counts(backend)["requests"]["read"] == 2


@pytest.mark.parametrize("path", ["fast-2025", "sdk-2026"])
async def test_an_admin_says_which_tools_are_idempotent(
    gateway: Server, backend: str, path: str
) -> None:
    control(backend, reset=True)
    tools = {"write": {"idempotent": True}, "read": {"idempotent": False}}
    server = register(gateway, backend, {"tools": tools})
    control(backend, tool="write", mode="after", times=1)
    assert (await call(gateway, path, f"{server}__write")).text == "write #2"
    control(backend, tool="read", mode="after", times=1)
    assert (await call(gateway, path, f"{server}__read")).is_error
    assert counts(backend)["executions"] == {"write": 2, "read": 1}


@pytest.mark.parametrize("mode", ["legacy", "auto"])  # 2025-11-25 and 2026-07-28 agents
@pytest.mark.parametrize("fault", ["refuse", "after"])
async def test_a_resource_read_is_retried_a_read_is_safe(
    gateway: Server, backend: str, mode: str, fault: str
) -> None:
    control(backend, reset=True)
    server = register(gateway, backend)
    control(backend, tool="resources/read", mode=fault, times=2)
    async with connect(f"{gateway.url}/mcp", mode=mode) as client:
        listed = await client.list_resources()
        (uri,) = [str(r.uri) for r in listed.resources if server in str(r.uri)]
        read = await client.read_resource(uri)
    ran = 3 if fault == "after" else 1  # "after" ran it each time, then lost the answer
    assert read.contents[0].text == f"read #{ran}"  # type: ignore[union-attr]
    assert counts(backend)["requests"]["resources/read"] == 3
    # With retries off for the server, the first failure is the agent's.
    control(backend, reset=True)
    quiet = register(gateway, backend, {"retries": {"enabled": False}})
    control(backend, tool="resources/read", mode=fault, times=1)
    async with connect(f"{gateway.url}/mcp", mode=mode) as client:
        listed = await client.list_resources()
        (uri,) = [str(r.uri) for r in listed.resources if quiet in str(r.uri)]
        with pytest.raises(MCPError):
            await client.read_resource(uri)
    assert counts(backend)["requests"]["resources/read"] == 1


async def test_retries_off_for_a_server(gateway: Server, backend: str) -> None:
    control(backend, reset=True)
    server = register(gateway, backend, {"retries": {"enabled": False}})
    control(backend, tool="read", mode="after", times=1)
    assert (await call(gateway, "fast-2026", f"{server}__read")).is_error
    assert counts(backend)["requests"]["read"] == 1


@pytest.mark.parametrize(
    ("resilience", "field"),
    [
        ({"breaker": {"failures": 0}}, "config.resilience.breaker.failures"),
        ({"retries": {"attempts": 11}}, "config.resilience.retries.attempts"),
        ({"breaker": {"typo": 1}}, "config.resilience.breaker.typo"),
        ({"tools": {"read": {"idempotent": "maybe"}}}, "config.resilience.tools.read.idempotent"),
        ("on", "config.resilience"),
    ],
)
def test_settings_are_checked(
    gateway: Server, backend: str, resilience: object, field: str
) -> None:
    r = httpx.post(
        f"{gateway.url}/api/v1/servers",
        json={
            "name": "badresilience",
            "type": "remote",
            "config": {"url": f"{backend}/mcp", "resilience": resilience},
        },
        headers=AUTH,
    )
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]], r.json()
