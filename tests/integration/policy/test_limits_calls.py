"""Limits on real calls: the refusal each path gives (REST 429 with `Retry-After` and
`RateLimit-*`; JSON-RPC error -32029 with `data.retryAfter` on `/mcp`, fast path and SDK
path, both eras), a limit on one server leaving another alone, the audit row, usage,
a budget's warning in `_meta`, and two gateway processes sharing one count on Redis
(with one PostgreSQL database: a policy applied through one is in force in the other)."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from tests.integration.mcp.test_endpoint import _new_key, connect
from tests.integration.policy.conftest import AUTH, applied, register
from tests.integration.policy.test_policy_calls import mcp, rest
from tests.support import Server, wait_for

REDIS = os.environ.get("MCPGW_TEST_REDIS_URL", "redis://127.0.0.1:6379")
LIMITED = -32029


def echo_limit(limit_id: str, rate: str = "5/minute", burst: int = 5) -> dict[str, Any]:
    return {
        "limits": [
            {
                "id": limit_id,
                "scope": ["key", "tool"],
                "targets": ["fix__*"],
                "rate": rate,
                "burst": burst,
            }
        ]
    }


async def test_a_rate_limit_on_every_path(gateway: Server) -> None:
    key = _new_key(gateway, "developer")
    applied(gateway, echo_limit(f"echo-{uuid.uuid4().hex[:6]}"))
    limit_id = httpx.get(f"{gateway.url}/api/v1/policies", headers=AUTH).json()["document"][
        "limits"
    ][0]["id"]
    for i in range(5):
        r = mcp(gateway, key, "fix__echo", {"text": str(i)})
        assert r.json()["result"]["isError"] is False, r.text
    usage = httpx.get(
        f"{gateway.url}/api/v1/usage/limits",
        params={"target": "fix__echo"},
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    assert [(u["limit"], u["used"], u["remaining"]) for u in usage["limits"]] == [(limit_id, 5, 0)]
    # REST: 429 with when to retry.
    r = rest(gateway, key, "fix__echo", {"text": "x"})
    assert r.status_code == 429, r.text
    body = r.json()
    assert (body["code"], body["limit"], body["kind"]) == ("rate_limited", limit_id, "rate")
    assert body["scope"]["tool"] == "fix__echo"
    assert 1 <= int(r.headers["Retry-After"]) <= 60 and r.headers["RateLimit-Limit"] == "5"
    assert r.headers["RateLimit-Remaining"] == "0"
    # /mcp, fast path and SDK path: the same JSON-RPC error.
    for arguments, route in (({"text": "x"}, "direct"), (None, None)):
        r = mcp(gateway, key, "fix__echo", arguments)
        error = r.json()["error"]
        assert r.headers.get("mcpgw-route") == route
        assert error["code"] == LIMITED and error["data"]["limit"] == limit_id
        assert error["data"]["retryAfter"] >= 1 and error["data"]["code"] == "rate_limited"
    async with connect(f"{gateway.url}/mcp", key, mode="legacy") as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("fix__echo", {"text": "x"})
        assert caught.value.error.code == LIMITED
        assert caught.value.error.data["scope"] == {"key": ANY_KEY, "tool": "fix__echo"}  # type: ignore[index]
        # Another tool of the server, and another server, are counted apart.
        assert (await client.call_tool("fix__notify", {})).is_error is False
        assert (await client.call_tool("fix2__echo", {"text": "x"})).is_error is False

    async def audited() -> list[dict[str, Any]] | None:
        r = httpx.get(
            f"{gateway.url}/api/v1/audit",
            params={"action": "tools/call", "outcome": "rate_limited", "limit": 100},
            headers=AUTH,
        )
        rows = [x for x in r.json()["items"] if (x["detail"] or {}).get("rule") == limit_id]
        return rows if len(rows) >= 4 else None

    rows = await wait_for(audited, timeout=10, what="four audited refusals")
    assert {row["error"]["code"] for row in rows} == {"rate_limited"}
    assert {row["route"] for row in rows} == {"rest", "mcp-fast", "mcp"}


class _AnyKey:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and len(other) > 8


ANY_KEY = _AnyKey()


async def test_a_budget_warns_in_meta_then_blocks(gateway: Server) -> None:
    key = _new_key(gateway, "developer")
    applied(
        gateway,
        {
            "limits": [
                {
                    "id": f"spend-{uuid.uuid4().hex[:6]}",
                    "scope": ["key"],
                    "targets": ["fix2__*"],
                    "budget": {"limit": 1.0, "warn_at": 0.5},
                }
            ],
            "costs": [{"targets": ["fix2__echo"], "cost": 0.3}],
        },
    )
    metas = []
    for _ in range(3):  # 0, 0.3, 0.6 spent before each
        r = mcp(gateway, key, "fix2__echo", {"text": "x"})
        metas.append(r.json()["result"].get("_meta", {}).get("io.mcpgw/warnings"))

        async def counted(before: int = len(metas)) -> bool:
            usage = httpx.get(
                f"{gateway.url}/api/v1/usage/limits", headers={"Authorization": f"Bearer {key}"}
            ).json()["limits"]
            return bool(usage) and usage[0]["used"] >= 0.3 * before - 1e-9

        await wait_for(counted, timeout=5, what="the call's cost counted")
    assert metas[0] is None and metas[1] is None
    assert metas[2] and "60%" in metas[2][0]
    body = rest(gateway, key, "fix2__echo", {"text": "x"}).json()  # 0.9: warned on REST too
    assert "_meta" in body and "io.mcpgw/warnings" in body["_meta"]
    r = rest(gateway, key, "fix2__echo", {"text": "x"})  # 1.2 spent
    assert r.status_code == 429 and r.json()["code"] == "budget_exceeded"
    assert r.json()["resetsAt"].endswith("T00:00:00+00:00")
    applied(gateway, {})


async def test_two_gateways_share_one_count_and_one_policy(
    server_factory: type[Server], shared: dict[str, str], backend_url: str
) -> None:
    first = server_factory(**shared)
    first.wait_ready(60)
    second = server_factory(**shared, MCPGW_POLICY_REFRESH_SECONDS="1")
    second.wait_ready(60)
    register(first, backend_url, "fix", "fix2")
    key = _new_key(first, "developer")
    await wait_for(
        lambda: rest(second, key, "fix__echo", {"text": "x"}).status_code == 200,
        timeout=30,
        what="the second gateway to know the servers",
    )
    applied(first, echo_limit("shared-ten", rate="10/hour", burst=10))
    started = time.monotonic()
    await wait_for(
        lambda: httpx.get(f"{second.url}/api/v1/policies", headers=AUTH).json()["version"] >= 1,
        timeout=10,
        what="the policy in force on the second gateway",
    )
    print(f"policy in force on the other replica after {time.monotonic() - started:.2f} s")
    statuses = []
    for i in range(30):
        server = first if i % 2 else second
        if i % 3:
            statuses.append(rest(server, key, "fix__echo", {"text": "x"}).status_code)
        else:
            error = mcp(server, key, "fix__echo", {"text": "x"}).json().get("error")
            statuses.append(429 if error and error["code"] == LIMITED else 200)
    assert statuses.count(200) == 10 and statuses.count(429) == 20, statuses
    # A limit on fix leaves fix2 alone, on both gateways.
    assert rest(first, key, "fix2__echo", {"text": "x"}).status_code == 200
    assert rest(second, key, "fix2__echo", {"text": "x"}).status_code == 200
