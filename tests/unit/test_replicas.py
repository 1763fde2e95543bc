"""The replica set's choices (runtimes/replicas.py) over runtimes that only count: the
strategies' shares, ejection and readmission, failover of unsent requests, affinity,
and the settings' checks (replica_settings.py). The same over real servers:
tests/integration/resilience/test_replicas.py."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from mcp import types

from gateway.errors import InvalidInput
from gateway.servers.runtimes.base import (
    BackendNotConnected,
    BackendUnavailable,
    Catalog,
    Health,
    RuntimeContext,
    ServerRuntime,
    ServerSpec,
)
from gateway.servers.runtimes.replica_settings import parse_replicas, plan
from gateway.servers.runtimes.replicas import ReplicaSetRuntime


class Counting:
    """A runtime that answers with its own label and counts calls."""

    def __init__(self, spec: ServerSpec, ctx: RuntimeContext) -> None:
        self.spec, self.ctx = spec, ctx
        self.health = Health(status="healthy")
        self.last_used = 0.0
        self.calls = 0
        self.down = False  # refuses to connect (the request is never sent)
        self.lose = False  # the answer is lost after sending
        self.running = True

    async def call_tool(
        self, name: str, arguments: dict[str, Any], timeout: float
    ) -> types.CallToolResult:
        if self.down:
            raise BackendNotConnected(f"cannot connect to {self.spec.config['url']}")
        self.calls += 1
        if self.lose:
            raise BackendUnavailable("connection lost during the call")
        text = types.TextContent(type="text", text=self.spec.config["url"])
        return types.CallToolResult(content=[text])

    async def ping(self) -> float:
        if self.down:
            raise BackendNotConnected("down")
        return 1.0

    async def start(self) -> None:
        if self.down:
            raise BackendNotConnected("down")

    async def stop(self, *, final: bool = False) -> None:
        self.running = False

    async def catalog(self) -> Catalog:
        return Catalog()

    def direct_route(self, *, modern: bool = True, affinity: str | None = None) -> Any:
        return None


def replica_set(
    n: int = 3, strategy: str = "round_robin", weights: list[int] | None = None
) -> tuple[ReplicaSetRuntime, list[Counting]]:
    weights = weights or [1] * n
    config = {
        "url": "http://r0/mcp",
        "replicas": {
            "strategy": strategy,
            "weight": weights[0],
            "endpoints": [{"url": f"http://r{i}/mcp", "weight": w} for i, w in enumerate(weights)][
                1:
            ],
        },
    }
    found = plan("remote", config)
    assert found is not None
    built: list[Counting] = []

    def build(spec: ServerSpec, ctx: RuntimeContext) -> ServerRuntime:
        built.append(Counting(spec, ctx))
        return built[-1]  # type: ignore[return-value]

    async def noop(*_: Any, **__: Any) -> None:
        return None

    ctx = RuntimeContext(Path("/tmp"), 5, True, (), noop, noop)
    spec = ServerSpec(id="s1", name="svc", type="remote", config=config)
    return ReplicaSetRuntime(spec, found, build, ctx), built


async def calls(rs: ReplicaSetRuntime, n: int, affinity: str | None = None) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        result = await rs.call_tool("t", {}, 5)
        seen[result.content[0].text] += 1  # type: ignore[union-attr]
    return seen


async def test_round_robin_takes_each_in_turn() -> None:
    rs, _ = replica_set(3)
    seen = await calls(rs, 300)
    assert seen == {"http://r0/mcp": 100, "http://r1/mcp": 100, "http://r2/mcp": 100}


async def test_weighted_shares_follow_the_weights_over_a_thousand_calls() -> None:
    rs, _ = replica_set(3, "weighted", [5, 3, 2])
    seen = await calls(rs, 1000)
    for url, weight in (("http://r0/mcp", 5), ("http://r1/mcp", 3), ("http://r2/mcp", 2)):
        assert abs(seen[url] / 1000 - weight / 10) <= 0.05 * weight / 10, seen


async def test_least_in_flight_avoids_the_busy_replica() -> None:
    rs, built = replica_set(3, "least_in_flight")
    built[0].health.in_flight = 5
    built[1].health.in_flight = 1
    seen = await calls(rs, 10)
    assert seen == {"http://r2/mcp": 10}
    assert rs.health.in_flight == 6  # the set's: its replicas' summed


async def test_failover_takes_the_primary_until_it_fails() -> None:
    rs, built = replica_set(3, "failover")
    assert await calls(rs, 5) == {"http://r0/mcp": 5}
    built[0].down = True
    assert await calls(rs, 5) == {"http://r1/mcp": 5}  # the unsent call went on at once
    states = {r["replica"]: r["status"] for r in rs.health.replicas() or []}
    assert states == {0: "ejected", 1: "healthy", 2: "healthy"}
    assert rs.health.status == "degraded" and "replica 0" in (rs.health.last_error or "")
    built[0].down = False
    await rs.ping()  # the probe readmits it
    assert await calls(rs, 2) == {"http://r0/mcp": 2}
    assert str(rs.health.status) == "healthy"


async def test_a_lost_call_is_not_repeated_here_but_its_replica_goes_out() -> None:
    rs, built = replica_set(2)
    built[0].lose = True
    with pytest.raises(BackendUnavailable):
        await rs.call_tool("t", {}, 5)
    assert built[0].calls == 1 and built[1].calls == 0  # executed once, not repeated
    assert await calls(rs, 4) == {"http://r1/mcp": 4}  # the retry stage's repeat goes here


async def test_all_replicas_down_is_unavailable_with_when_to_retry() -> None:
    rs, built = replica_set(2)
    for runtime in built:
        runtime.down = True
    with pytest.raises(BackendUnavailable, match="all 2 replicas failed"):
        await rs.call_tool("t", {}, 5)
    assert rs.health.status == "unhealthy"
    assert rs.direct_route() is None


async def test_an_ejected_replica_comes_back_after_eject_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rs, built = replica_set(2)
    clock = [1000.0]
    monkeypatch.setattr("gateway.servers.runtimes.replicas.monotonic", lambda: clock[0])
    built[0].down = True
    await calls(rs, 2)
    built[0].down = False
    assert await calls(rs, 4) == {"http://r1/mcp": 4}
    clock[0] += 10.5  # eject_seconds (default 10)
    assert (await calls(rs, 4))["http://r0/mcp"] == 2


class Session:
    """A relay stand-in: what the SDK path's FrontRelay says of a 2025 agent's session."""

    modern = False
    wants_progress = False
    input_round = None

    def __init__(self, key: str) -> None:
        self.affinity = key


async def test_a_2025_session_stays_on_its_replica_and_moves_when_it_fails() -> None:
    from gateway.servers.runtimes.relay import CURRENT_RELAY

    rs, built = replica_set(3)
    token = CURRENT_RELAY.set(Session("session-a"))  # type: ignore[arg-type]
    try:
        first = await calls(rs, 6)
        assert len(first) == 1  # one replica for the session's every call
        (url,) = first
        index = int(url[len("http://r")])
        built[index].down = True
        moved = await calls(rs, 6)
        assert len(moved) == 1 and url not in moved
    finally:
        CURRENT_RELAY.reset(token)
    built[index].down = False
    await rs.ping()
    assert len(await calls(rs, 3)) == 3  # no session: balanced


async def test_a_replicated_server_with_one_dead_replica_starts_with_the_rest() -> None:
    rs, built = replica_set(3)
    built[1].down = True
    await rs.start()
    assert rs.health.status == "degraded"
    for runtime in built:
        runtime.down = True
    with pytest.raises(BackendUnavailable):
        await rs.start()
    await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("server_type", "value", "field"),
    [
        ("npx", {"endpoints": [{"url": "http://b/mcp"}]}, "config.replicas.endpoints"),
        ("remote", {"count": 3}, "config.replicas.count"),
        ("generated", {"count": 2}, "config.replicas"),
        ("remote", {"strategy": "random"}, "config.replicas.strategy"),
        ("remote", {"endpoints": [{"url": "ftp://b"}]}, "config.replicas.endpoints.0.url"),
        ("remote", {"endpoints": [{"url": "http://b/mcp", "weight": 0}]},
         "config.replicas.endpoints.0.weight"),
    ],
)  # fmt: skip
def test_settings_errors_name_the_field(server_type: str, value: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_replicas(server_type, value)
    errors = caught.value.details["errors"]
    assert errors[0]["field"] == field, errors


def test_process_replicas_plan_count_copies_of_the_config() -> None:
    found = plan("uvx", {"package": "mcp-server-time", "replicas": {"count": 3}})
    assert found is not None
    assert found.configs == ({"package": "mcp-server-time"},) * 3
    assert found.labels == ("process 1", "process 2", "process 3")
    assert plan("uvx", {"package": "x", "replicas": {"count": 1}}) is None
