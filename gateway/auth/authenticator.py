"""Authentication on the hot path: verified keys served from memory, usage written in batches.

A request with a key seen in the last ``ttl`` seconds costs one SHA-256 and a dict
lookup; the database is read only on a miss. Revocation and user changes made in
this process drop cache entries at once; in other replicas the TTL bounds how long
a revoked key keeps working (a Redis event bus will shorten that to milliseconds).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import TypeVar

from gateway.auth.keys import hash_key
from gateway.auth.principal import Principal
from gateway.auth.service import IdentityService
from gateway.db import utcnow
from gateway.errors import Unauthenticated

log = logging.getLogger("gateway.auth")

_MAX_ENTRIES = 50_000
_NEGATIVE_TTL = 2.0

_E = TypeVar("_E")


def _remember(table: dict[str, _E], digest: str, entry: _E) -> None:
    if len(table) >= _MAX_ENTRIES:
        table.clear()  # crude, but bounded: a full cache only costs re-verification
    table[digest] = entry


class Authenticator:
    """Turns a bearer token into a :class:`Principal`, caching successes and failures."""

    def __init__(self, identity: IdentityService, ttl_seconds: float) -> None:
        self.identity = identity
        self.ttl = ttl_seconds
        self._hits: dict[str, tuple[Principal, float]] = {}
        self._misses: dict[str, tuple[Unauthenticated, float]] = {}
        self._usage: dict[str, datetime] = {}
        identity.on_key_revoked = self.forget_key
        identity.on_user_changed = self.forget_user

    async def authenticate(self, token: str) -> Principal:
        digest = hash_key(token)
        now = time.monotonic()
        hit = self._hits.get(digest)
        if hit is not None and hit[1] > now:
            principal = hit[0]
        else:
            miss = self._misses.get(digest)
            if miss is not None and miss[1] > now:
                raise miss[0]
            try:
                principal = await self.identity.authenticate(token)
            except Unauthenticated as exc:
                _remember(self._misses, digest, (exc, now + min(self.ttl, _NEGATIVE_TTL)))
                raise
            if self.ttl > 0:
                _remember(self._hits, digest, (principal, now + self.ttl))
        if principal.key_id is not None:
            self._usage[principal.key_id] = utcnow()
        return principal

    def forget_key(self, key_id: str) -> None:
        for digest in [d for d, (p, _) in self._hits.items() if p.key_id == key_id]:
            del self._hits[digest]

    def forget_user(self, user_id: str) -> None:
        for digest in [d for d, (p, _) in self._hits.items() if p.user_id == user_id]:
            del self._hits[digest]

    # --- last-used bookkeeping, off the request path ----------------------------------
    async def flush_usage(self) -> None:
        """Write pending last-used times; keeps them for the next try if the write fails."""
        if not self._usage:
            return
        pending, self._usage = self._usage, {}
        try:
            await self.identity.record_key_use(pending)
        except Exception:
            log.warning("could not record key usage; will retry", exc_info=True)
            for key_id, when in pending.items():
                self._usage.setdefault(key_id, when)

    async def run_usage_flusher(self, interval: float) -> None:
        """Flush every ``interval`` seconds until cancelled; shutdown then calls flush_usage."""
        while True:
            await asyncio.sleep(interval)
            await self.flush_usage()
