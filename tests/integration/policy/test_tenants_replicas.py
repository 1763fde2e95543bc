"""Tenants across replicas: two gateways on one PostgreSQL and one Redis. A team's
document and quotas changed through one are in force on the other within 2 s; the
calls_per_day count is shared; creates through both at once stay within max_servers
(the team's row is locked until the insert commits)."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from tests.integration.policy.conftest import AUTH, register
from tests.integration.policy.test_policy_calls import mcp, rest
from tests.integration.policy.test_tenants import DENY_WHOAMI, person, put_quotas, put_team_policy
from tests.support import Server, wait_for

LIMITED = -32029


@pytest.fixture
def pair_env(shared: dict[str, str]) -> dict[str, str]:
    """One PostgreSQL database and one Redis key prefix for two gateways (conftest)."""
    return {**shared, "MCPGW_POLICY_REFRESH_SECONDS": "1"}


async def test_team_changes_reach_the_other_replica_and_counts_are_shared(
    server_factory: type[Server], pair_env: dict[str, str], backend_url: str
) -> None:
    first = server_factory(**pair_env)
    first.wait_ready(60)
    second = server_factory(**pair_env)
    second.wait_ready(60)
    register(first, backend_url, "fix", "fix2")
    t = httpx.post(
        f"{first.url}/api/v1/teams", json={"name": f"r-{uuid.uuid4().hex[:6]}"}, headers=AUTH
    ).json()
    _, member = person(first, **{t["id"]: "member"})
    await wait_for(
        lambda: rest(second, member, "fix__echo", {"text": "x"}).status_code == 200,
        timeout=30,
        what="the second gateway to know the servers",
    )

    # A team document applied through one replica, in force on the other within 2 s.
    assert put_team_policy(first, t["id"], DENY_WHOAMI).status_code == 200
    started = time.monotonic()
    await wait_for(
        lambda: rest(second, member, "fix__whoami", {}).status_code == 403,
        timeout=2,
        what="the team document in force on the second gateway",
    )
    print(f"team document in force on the other replica after {time.monotonic() - started:.2f} s")

    # A calls_per_day quota set through one, counted once across both.
    assert put_quotas(first, t["id"], calls_per_day=3).status_code == 200
    started = time.monotonic()

    def loaded() -> bool:
        r = httpx.get(
            f"{second.url}/api/v1/usage/limits", headers={"Authorization": f"Bearer {member}"}
        )
        return any(item["limit"].endswith("/calls_per_day") for item in r.json()["limits"])

    await wait_for(loaded, timeout=2, what="the quota in force on the second gateway")
    print(f"team quota in force on the other replica after {time.monotonic() - started:.2f} s")
    statuses = []
    for i in range(6):
        server = first if i % 2 else second
        if i % 3:
            statuses.append(rest(server, member, "fix__echo", {"text": "x"}).status_code)
        else:
            error = mcp(server, member, "fix__echo", {"text": "x"}).json().get("error")
            statuses.append(429 if error and error["code"] == LIMITED else 200)
    assert statuses == [200, 200, 200, 429, 429, 429], statuses

    # Creates through both replicas at once stay within max_servers.
    assert put_quotas(first, t["id"], max_servers=2).status_code == 200

    async def one(client: httpx.AsyncClient, server: Server) -> int:
        r = await client.post(
            f"{server.url}/api/v1/servers",
            json={"name": f"c{uuid.uuid4().hex[:8]}", "type": "remote",
                  "config": {"url": backend_url}, "team_id": t["id"], "enabled": False},
            headers=AUTH,
        )  # fmt: skip
        return r.status_code

    async with httpx.AsyncClient(timeout=60) as client:
        statuses = await asyncio.gather(
            *(one(client, first if i % 2 else second) for i in range(8))
        )
    assert sorted(statuses) == [201, 201] + [409] * 6, statuses
