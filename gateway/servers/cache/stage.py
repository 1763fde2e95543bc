"""The pipeline's ``cache`` stage: answers of read-only tools (and resource reads) of
servers that opt in (their config's ``cache`` object, rules.py), served again without
the backend until their TTL runs out.

Where it sits: after ``authorize`` and ``limit``, so a cached answer is allowed and
counted like any other, and before the backend, which a hit never reaches; ``record``
audits a hit with ``detail: {"cache": "hit"}``. The key is the server, the tool, the
arguments (canonical JSON: key order does not matter) and the caller's scope: the
user, unless the server's answers are ``shared`` (never for servers whose users bring
their own credentials). Errors and ``isError`` results are not kept, nor answers to
calls during which the backend asked the agent something. An agent that needs fresh
data sends ``_meta: {"io.mcpgw/cache": "no-cache"}``: the backend answers, and its
answer replaces the cached one.

On the fast path a hit is the cached result's JSON spliced into a response with the
agent's request id (fastcall.py); elsewhere a fresh result object.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from mcp import types
from prometheus_client import CollectorRegistry

from gateway.auth.principal import Principal
from gateway.observability.families import CountFamily
from gateway.servers.cache.rules import CacheRules
from gateway.servers.cache.store import Entry, Key, MemoryStore, RedisStore
from gateway.servers.pipeline import Call, StageDefaults
from gateway.servers.runtimes.base import Catalog, ServerSpec

# The `_meta` key an agent sets to "no-cache" to bypass the cache for one request.
META_KEY = "io.mcpgw/cache"
# What an entry point sets `Call.cache` to for a call never to be cached (a retry that
# resumes a parked call).
SKIP = "skip"


class Ticket:
    """A cacheable call on its way to the backend: where its answer goes."""

    __slots__ = ("audit", "key", "ttl")

    def __init__(self, key: Key, ttl: float, audit: str | None) -> None:
        self.key, self.ttl, self.audit = key, ttl, audit


class _Hit:
    """``Call.cache`` of a call answered from the cache (audited as such)."""

    __slots__ = ()
    audit = "hit"


HIT = _Hit()


def no_cache(meta: Any) -> bool:
    """Whether a request's ``_meta`` asks for a fresh answer."""
    return meta is not None and meta.get(META_KEY) == "no-cache"


class ResponseCache(StageDefaults):
    """The ``cache`` stage, and the cache of resource reads (see the module docstring)."""

    def __init__(
        self,
        catalog_of: Callable[[str], Catalog | None],
        *,
        default_ttl: float,
        memory: MemoryStore,
        remote: RedisStore | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.catalog_of = catalog_of
        self.default_ttl = default_ttl
        self.memory = memory
        self.remote = remote
        self.storage = remote.kind if remote is not None else memory.kind
        registry = registry or CollectorRegistry()
        self.hits = CountFamily(
            "mcpgw_cache_hits",
            "Tool calls and resource reads answered from the response cache, by server.",
            ["server"],
            registry=registry,
        )
        self.misses = CountFamily(
            "mcpgw_cache_misses",
            "Cacheable tool calls and resource reads the cache could not answer (the "
            "backend did), by server; `no-cache` requests are not counted.",
            ["server"],
            registry=registry,
        )
        self._rules: dict[str, tuple[dict[str, Any], CacheRules | None]] = {}
        self._read_only: dict[str, tuple[Catalog | None, frozenset[str]]] = {}
        self._background: set[asyncio.Task[Any]] = set()

    # --- what is cached -----------------------------------------------------------------
    def rules(self, spec: ServerSpec) -> CacheRules | None:
        """The server's cache rules (compiled once per config)."""
        found = self._rules.get(spec.name)
        if found is None or found[0] is not spec.config:
            found = (spec.config, CacheRules.of(spec.config, self.default_ttl))
            self._rules[spec.name] = found
        return found[1]

    def read_only(self, server: str, tool: str) -> bool:
        """Whether the catalog annotates the server's ``tool`` readOnlyHint."""
        catalog = self.catalog_of(server)
        found = self._read_only.get(server)
        if found is None or found[0] is not catalog:
            names = frozenset(
                t.name
                for t in (catalog.tools if catalog is not None else ())
                if t.annotations is not None and t.annotations.read_only_hint
            )
            found = self._read_only[server] = (catalog, names)
        return tool in found[1]

    @staticmethod
    def key(
        spec: ServerSpec,
        server: str,
        kind: str,
        name: str,
        principal: Principal,
        rules: CacheRules,
        args: Any,
    ) -> Key | None:
        """The entry's key; None when the arguments have no canonical JSON. The scope
        names the server's registration and version too: a changed (or removed and
        registered again) server starts afresh."""
        try:
            canonical = orjson.dumps(args, option=orjson.OPT_SORT_KEYS) if args else b"{}"
        except TypeError:
            return None
        # A flat tuple: nothing formatted per call, and hashing it hashes strings whose
        # hashes Python keeps.
        caller = "*" if rules.shared else principal.user_id
        return (server, kind, name, spec.id, spec.version, caller, canonical)

    # --- the stage ----------------------------------------------------------------------
    def enter(self, call: Call) -> Awaitable[None] | None:
        # A plain function: a lookup in memory costs no coroutine; Redis's is awaited.
        if call.cache is not None:  # an entry point said: not this one
            return None
        target = call.target
        spec = target.runtime.spec
        rules = self.rules(spec)
        if rules is None:
            return None
        # By the backend's tool name: settings and annotations are (transforms.py).
        server, tool = target.server, target.backend
        ttl = rules.tool_ttl(tool, self.read_only(server, tool))
        if ttl is None:
            return None
        key = self.key(spec, server, "tool", tool, call.principal, rules, call.arguments)
        if key is None:
            return None
        if no_cache(call.meta):
            call.cache = Ticket(key, ttl, "bypass")
            return None
        if self.remote is not None:
            return self._look_up(call, self.remote, key, ttl)
        self._answer(call, self.memory.get(key), key, ttl)
        return None

    async def _look_up(self, call: Call, remote: RedisStore, key: Key, ttl: float) -> None:
        self._answer(call, await remote.get(key), key, ttl)

    def _answer(self, call: Call, entry: Entry | None, key: Key, ttl: float) -> None:
        """The call answered by ``entry``, or (None) sent on with a ticket for its answer."""
        server = key[0]
        if entry is None:
            self.misses.inc((server,))
            call.cache = Ticket(key, ttl, None)
            return
        self.hits.inc((server,))
        call.cache = HIT
        call.outcome = "ok"
        call.bytes_out = len(entry.body)
        if call.route == "direct":
            call.answer = entry  # spliced into the response as it is (fastcall.py)
        else:
            call.answer = types.CallToolResult.model_validate(entry.result)

    def leave(self, call: Call, error: BaseException | None) -> None:
        ticket = call.cache
        if type(ticket) is not Ticket or error is not None or call.outcome != "ok":
            return
        if getattr(call.origin, "asked", False):
            return  # the answer depends on what the agent's user said
        result = call.result
        if isinstance(result, dict):  # the fast path's: the backend's result, as sent
            data = result
        elif type(result) is types.CallToolResult:
            data = result.model_dump(by_alias=True, exclude_none=True, mode="json")
        else:
            return  # input_required: the call goes on
        if data.get("isError"):
            return
        data.pop("resultType", None)  # each era's answer adds its own
        self.keep(ticket, data)

    def keep(self, ticket: Ticket, data: dict[str, Any]) -> None:
        """Store an answer under its ticket."""
        body = orjson.dumps(data)
        if self.remote is None:
            self.memory.put(ticket.key, Entry(data, body, time.monotonic() + ticket.ttl))
        else:
            self._spawn(self.remote.put(ticket.key, body, ticket.ttl))

    # --- resource reads -----------------------------------------------------------------
    async def read(
        self,
        principal: Principal,
        spec: ServerSpec,
        server: str,
        uri: str,
        meta: Any,
        read: Callable[[], Awaitable[types.ReadResourceResult]],
    ) -> tuple[types.ReadResourceResult, str | None]:
        """A resource read through the cache: the result and how the cache took part
        (``hit``, ``bypass`` or None), for the read's audit row."""
        rules = self.rules(spec)
        if rules is None or not rules.resources:
            return await read(), None
        key = self.key(spec, server, "resource", uri, principal, rules, None)
        assert key is not None
        verdict = "bypass" if no_cache(meta) else None
        if verdict is None:
            entry = self.memory.get(key) if self.remote is None else await self.remote.get(key)
            if entry is not None:
                self.hits.inc((server,))
                return types.ReadResourceResult.model_validate(entry.result), "hit"
            self.misses.inc((server,))
        result = await read()
        data = result.model_dump(by_alias=True, exclude_none=True, mode="json")
        data.pop("resultType", None)
        self.keep(Ticket(key, rules.ttl, None), data)
        return result, verdict

    # --- invalidation and figures -------------------------------------------------------
    async def invalidate(self, server: str) -> int:
        """Forget every answer of ``server`` (its backend announced a change, or an admin
        cleared it); how many were dropped."""
        if self.remote is None:
            return self.memory.drop(server)
        return await self.remote.drop(server)

    def invalidate_soon(self, server: str) -> None:
        """:meth:`invalidate` in the background (from a backend's notification)."""
        if self.remote is None:
            self.memory.drop(server)
        else:
            self._spawn(self.remote.drop(server))

    def stats(self, server: str) -> dict[str, Any]:
        """This process's figures of ``server``: hits, misses, hit rate, entries held
        (in memory; None on Redis, which is not counted)."""
        hits, misses = self.hits.get((server,)), self.misses.get((server,))
        looked = hits + misses
        return {
            "storage": self.storage,
            "hits": int(hits),
            "misses": int(misses),
            "hit_rate": round(hits / looked, 4) if looked else None,
            "entries": self.memory.count(server) if self.remote is None else None,
        }

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait for stores and drops in flight (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
