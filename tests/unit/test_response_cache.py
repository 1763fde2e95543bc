"""The response cache's rules, store and stage (gateway/servers/cache/), without a
backend: the stage runs in a real Pipeline around a backend function that counts its
calls (the integration tests, tests/integration/servers/test_response_cache.py, use
real backends)."""

from __future__ import annotations

import hashlib
import time
from types import SimpleNamespace
from typing import Any

import pytest
from mcp import types

from gateway.auth.principal import Principal
from gateway.errors import InvalidInput
from gateway.servers.cache.rules import CacheRules, split_cache
from gateway.servers.cache.stage import HIT, ResponseCache, Ticket
from gateway.servers.cache.store import Entry, MemoryStore, RedisStore
from gateway.servers.calls import CallTarget
from gateway.servers.pipeline import Call, Pipeline, _detail
from gateway.servers.runtimes.base import Catalog, ServerSpec

ALICE = Principal("alice", "a@x", "a", "developer", "k1", ("*",))
BOB = Principal("bob", "b@x", "b", "developer", "k2", ("*",))


def _spec(cache: dict[str, Any] | None, **config: Any) -> ServerSpec:
    if cache is not None:
        config["cache"] = cache
    return ServerSpec(id="id-1", name="srv", type="remote", config=config)


def _catalog(*read_only: str) -> Catalog:
    catalog = Catalog()
    for name in ("look", "write", *read_only):
        hints = types.ToolAnnotations(readOnlyHint=True) if name in read_only else None
        catalog.tools.append(
            types.Tool(name=name, input_schema={"type": "object"}, annotations=hints)
        )
    return catalog


class Backend:
    """Counts calls; answers `n` (or an error result when told)."""

    def __init__(self, error: bool = False) -> None:
        self.calls, self.error = 0, error

    async def __call__(self, call: Call) -> types.CallToolResult:
        self.calls += 1
        result = types.CallToolResult(
            content=[types.TextContent(type="text", text=str(self.calls))], is_error=self.error
        )
        call.outcome = "tool_error" if self.error else "ok"
        call.result = result
        return result


def _setup(
    cache: dict[str, Any] | None = None, **config: Any
) -> tuple[Pipeline, ResponseCache, ServerSpec]:
    catalog = _catalog("look")
    stage = ResponseCache(lambda server: catalog, default_ttl=60, memory=MemoryStore(100, 1 << 20))
    return Pipeline({"cache": stage}), stage, _spec(cache if cache is not None else {}, **config)


async def _run(
    pipeline: Pipeline,
    spec: ServerSpec,
    backend: Backend,
    tool: str = "look",
    args: dict[str, Any] | None = None,
    who: Principal = ALICE,
    route: Any = "rest",
    meta: dict[str, Any] | None = None,
) -> tuple[Any, Call]:
    runtime = SimpleNamespace(spec=spec)
    call = Call(who, CallTarget("srv", tool, runtime), args or {"q": 1}, route)  # type: ignore[arg-type]
    call.meta = meta
    return await pipeline.run(call, backend), call


async def test_a_read_only_tool_is_answered_once_and_audited_as_a_hit() -> None:
    pipeline, stage, spec = _setup()
    backend = Backend()
    first, _ = await _run(pipeline, spec, backend)
    second, call = await _run(pipeline, spec, backend, args={"q": 1})
    assert backend.calls == 1 and first.content[0].text == second.content[0].text == "1"
    assert call.cache is HIT and call.outcome == "ok" and _detail(call) == {"cache": "hit"}
    assert second is not first  # a fresh object per hit: later stages may change it
    # The fast path's hit is the entry itself (spliced into the response).
    entry, _ = await _run(pipeline, spec, backend, route="direct")
    assert type(entry) is Entry and entry.body.startswith(b'{"content":')
    assert stage.stats("srv") | {"entries": 1} == {
        "storage": "memory", "hits": 2, "misses": 1, "hit_rate": 0.6667, "entries": 1,
    }  # fmt: skip


async def test_what_is_never_cached() -> None:
    pipeline, _, spec = _setup()
    for tool, backend in (("write", Backend()), ("look", Backend(error=True))):
        await _run(pipeline, spec, backend, tool=tool)
        await _run(pipeline, spec, backend, tool=tool)
        assert backend.calls == 2, tool
    # A server without a cache object, or with it disabled.
    for cache in (None, {"enabled": False}):
        plain = ServerSpec(
            id="p", name="plain", type="remote", config={} if cache is None else {"cache": cache}
        )
        backend = Backend()
        await _run(pipeline, plain, backend)
        await _run(pipeline, plain, backend)
        assert backend.calls == 2
    # An entry point that said "skip" (a resumed call).
    backend = Backend()
    for _ in range(2):
        runtime = SimpleNamespace(spec=spec)
        call = Call(ALICE, CallTarget("srv", "look", runtime), {"z": 1}, "sdk")  # type: ignore[arg-type]
        call.cache = "skip"
        await pipeline.run(call, backend)
    assert backend.calls == 2


async def test_scope_arguments_bypass_and_admin_tools() -> None:
    pipeline, _, spec = _setup({"tools": {"write": {}, "look": {"enabled": False}}})
    backend = Backend()
    await _run(pipeline, spec, backend, tool="write")
    await _run(pipeline, spec, backend, tool="write", who=BOB)  # another user: own entry
    await _run(pipeline, spec, backend, tool="write", args={"q": 2})  # other arguments
    assert backend.calls == 3
    await _run(pipeline, spec, backend, tool="write")
    assert backend.calls == 3
    # no-cache: the backend answers, and its answer replaces the entry.
    fresh, call = await _run(
        pipeline, spec, backend, tool="write", meta={"io.mcpgw/cache": "no-cache"}
    )
    assert backend.calls == 4 and _detail(call) == {"cache": "bypass"}
    again, _ = await _run(pipeline, spec, backend, tool="write")
    assert backend.calls == 4 and again.content[0].text == fresh.content[0].text == "4"
    # `enabled: false` wins over readOnlyHint.
    await _run(pipeline, spec, backend, tool="look")
    await _run(pipeline, spec, backend, tool="look")
    assert backend.calls == 6


async def test_shared_answers_serve_everyone_but_never_per_user_servers() -> None:
    pipeline, _, spec = _setup({"shared": True})
    backend = Backend()
    await _run(pipeline, spec, backend)
    await _run(pipeline, spec, backend, who=BOB)
    assert backend.calls == 1
    per_user = _spec({"shared": True}, credentials={"kind": "secret"})
    backend = Backend()
    await _run(pipeline, per_user, backend)
    await _run(pipeline, per_user, backend, who=BOB)
    assert backend.calls == 2


async def test_a_changed_server_starts_afresh_and_invalidation_drops() -> None:
    pipeline, stage, spec = _setup()
    backend = Backend()
    await _run(pipeline, spec, backend)
    newer = ServerSpec(id="id-1", name="srv", type="remote", config=spec.config, version=2)
    await _run(pipeline, newer, backend)
    assert backend.calls == 2
    assert await stage.invalidate("srv") == 2
    await _run(pipeline, newer, backend)
    assert backend.calls == 3


def test_rules_and_their_ttls() -> None:
    assert CacheRules.of({}, 60) is None
    assert CacheRules.of({"cache": {"enabled": False}}, 60) is None
    rules = CacheRules.of({"cache": {"ttl_seconds": 30, "tools": {"a": {"ttl_seconds": 5}}}}, 60)
    assert rules is not None
    assert (rules.tool_ttl("a", False), rules.tool_ttl("b", True), rules.tool_ttl("b", False)) == (
        5,
        30,
        None,
    )
    assert CacheRules.of({"cache": {}}, 60).ttl == 60  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("cache", "field"),
    [
        ({"ttl_seconds": -1}, "config.cache.ttl_seconds"),
        ({"ttl_seconds": 10 * 86400}, "config.cache.ttl_seconds"),
        ({"tools": {"a": {"bogus": 1}}}, "config.cache.tools.a.bogus"),
        ({"scope": "user"}, "config.cache.scope"),
        ([], "config.cache"),
    ],
)
def test_settings_are_refused_naming_the_field(cache: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        split_cache({"url": "http://x", "cache": cache})
    assert field in [e["field"] for e in caught.value.details["errors"]]


def test_shared_is_refused_for_per_user_credentials() -> None:
    with pytest.raises(InvalidInput) as caught:
        split_cache(
            {"url": "http://x", "credentials": {"kind": "secret"}, "cache": {"shared": True}}
        )
    assert [e["field"] for e in caught.value.details["errors"]] == ["config.cache.shared"]
    rest, cache = split_cache({"url": "http://x", "cache": {"ttl_seconds": 5}})
    assert rest == {"url": "http://x"} and cache is not None and cache["ttl_seconds"] == 5


def test_the_memory_store_is_bounded_and_expires() -> None:
    store = MemoryStore(max_entries=3, max_bytes=1600)
    later = time.monotonic() + 60

    def key(i: int) -> Any:
        return ("s", "tool", "t", "id-1", 1, "u", str(i).encode())

    for i in range(4):
        store.put(key(i), Entry({}, b"x" * 10, later))
    assert store.get(key(0)) is None and store.count("s") == 3  # least recently used went
    store.get(key(1))  # now the most recent
    store.put(key(4), Entry({}, b"x" * 10, later))
    assert store.get(key(1)) is not None and store.get(key(2)) is None
    store.put(key(5), Entry({}, b"x" * 101, later))  # over a sixteenth of the bytes
    assert store.get(key(5)) is None
    store.put(key(6), Entry({}, b"x", time.monotonic() - 1))
    assert store.get(key(6)) is None  # expired
    assert store.drop("s") == 2 and store.count("s") == 0 and store.bytes == 0


def test_a_ticket_is_not_audited_unless_bypassing() -> None:
    call = Call(ALICE, CallTarget("srv", "t", None), {}, "rest")  # type: ignore[arg-type]
    call.cache = Ticket(("s", "tool", "t", "id-1", 1, "u", b"{}"), 1.0, None)
    assert _detail(call) is None
    call.rule = "r1"
    call.cache = HIT
    assert _detail(call) == {"rule": "r1", "cache": "hit"}


def test_keys_name_the_registration_the_caller_and_canonical_arguments() -> None:
    """A flat key (nothing formatted per call), and on Redis the entry's name it always
    had: answers stored before keep being found, and a server's are dropped by prefix."""
    spec = _spec({})
    rules = CacheRules.of(spec.config, 60)
    assert rules is not None
    key = ResponseCache.key(spec, "srv", "tool", "look", ALICE, rules, {"b": 2, "a": 1})
    assert key == ("srv", "tool", "look", "id-1", 1, "alice", b'{"a":1,"b":2}')
    shared = CacheRules.of({"cache": {"shared": True}}, 60)
    assert shared is not None
    assert ResponseCache.key(spec, "srv", "tool", "look", BOB, shared, {})[5] == "*"
    assert ResponseCache.key(spec, "srv", "tool", "look", BOB, rules, {"x": {1}}) is None
    store = RedisStore("redis://127.0.0.1:1", "p")  # never connected: names only
    digest = hashlib.blake2b(
        b"\0".join((b"tool", b"look", b"id-1.1:alice", b'{"a":1,"b":2}')), digest_size=20
    ).hexdigest()
    assert key is not None and store.name(key) == f"p:cache:srv:{digest}"
