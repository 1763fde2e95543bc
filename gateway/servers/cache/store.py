"""Where cached answers live: this process's memory (bounded, least recently used go
first) or Redis (shared by every replica that uses the same Redis and key prefix).

An entry is the answer's ``result`` as the agent got it (the server's secrets already
masked) and its JSON: the fast path answers a hit by splicing those bytes into a
response with the agent's request id, without serialising anything.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from typing import Any

import orjson

log = logging.getLogger("gateway.cache")

# (server, kind "tool" | "resource", tool name or URI, the server's registration id and
# version, the caller's scope (a user id, or "*" when shared), canonical arguments)
Key = tuple[str, str, str, str, int, str, bytes]


class Entry:
    """One cached answer."""

    __slots__ = ("body", "expires", "modern", "result")

    def __init__(self, result: dict[str, Any], body: bytes, expires: float) -> None:
        self.result = result  # never changed: whoever answers with it copies it first
        self.body = body  # orjson.dumps(result)
        self.expires = expires  # time.monotonic() deadline (memory)
        # The result as a 2026-07-28 agent gets it on the fast path (made on first use).
        self.modern: bytes | None = None


class MemoryStore:
    """Entries in this process, bounded in count and bytes."""

    kind = "memory"

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.largest = max(1, max_bytes // 16)
        self.bytes = 0
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self._per_server: dict[str, int] = {}  # entries held, by server (for figures)

    def get(self, key: Key) -> Entry | None:
        """The live entry of ``key`` (an expired one is dropped)."""
        entries = self._entries
        entry = entries.get(key)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            self._pop(key)
            return None
        entries.move_to_end(key)
        return entry

    def put(self, key: Key, entry: Entry) -> None:
        """Keep ``entry`` (unless larger than a sixteenth of the byte bound), evicting
        the least recently used past the bounds."""
        size = len(entry.body)
        if size > self.largest:
            return
        self._pop(key)
        self._entries[key] = entry
        self.bytes += size
        self._per_server[key[0]] = self._per_server.get(key[0], 0) + 1
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self._pop(next(iter(self._entries)))

    def _pop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= len(entry.body)
            left = self._per_server[key[0]] - 1
            if left:
                self._per_server[key[0]] = left
            else:
                del self._per_server[key[0]]

    def drop(self, server: str, kind: str | None = None, name: str | None = None) -> int:
        """Forget ``server``'s entries (only those of ``kind``/``name`` when given)."""
        doomed = [
            k
            for k in self._entries
            if k[0] == server and (kind is None or k[1] == kind) and (name is None or k[2] == name)
        ]
        for key in doomed:
            self._pop(key)
        return len(doomed)

    def count(self, server: str) -> int:
        """How many entries of ``server`` are held (expired ones included until read)."""
        return self._per_server.get(server, 0)


class RedisStore:
    """Entries in Redis, one key each (``{prefix}:cache:{server}:{digest}``), expiring
    by Redis's own TTL. A Redis failure is a miss (the call goes to the backend), logged
    at most once a minute."""

    kind = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.from_url(url)
        self.prefix = f"{prefix}:cache:"
        self._warned = 0.0

    def name(self, key: Key) -> str:
        _, kind, name, spec_id, version, caller, canonical = key
        scope = f"{spec_id}.{version}:{caller}"
        digest = hashlib.blake2b(
            b"\0".join((kind.encode(), name.encode(), scope.encode(), canonical)), digest_size=20
        ).hexdigest()
        return f"{self.prefix}{key[0]}:{digest}"

    def _failed(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned > 60:
            self._warned = now
            log.warning("response cache storage failed", extra={"op": what, "error": str(exc)})

    async def get(self, key: Key) -> Entry | None:
        try:
            body = await self.client.get(self.name(key))
        except Exception as exc:
            self._failed("get", exc)
            return None
        if not isinstance(body, bytes):
            return None
        try:
            return Entry(orjson.loads(body), body, 0.0)
        except orjson.JSONDecodeError:
            return None

    async def put(self, key: Key, body: bytes, ttl: float) -> None:
        try:
            await self.client.set(self.name(key), body, px=max(1, int(ttl * 1000)))
        except Exception as exc:
            self._failed("set", exc)

    async def drop(self, server: str) -> int:
        """Forget every entry of ``server`` (a scan of its keys: admin action or a
        backend's announcement, not per call)."""
        dropped = 0
        try:
            batch: list[Any] = []
            async for name in self.client.scan_iter(match=f"{self.prefix}{server}:*", count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    dropped += await self.client.unlink(*batch)
                    batch = []
            if batch:
                dropped += await self.client.unlink(*batch)
        except Exception as exc:
            self._failed("drop", exc)
        return dropped

    async def close(self) -> None:
        await self.client.aclose()
