"""Where the limit stage's counts live: in process (the embedded default) or on Redis
(``MCPGW_REDIS_URL``) so that every gateway process shares them.

On Redis each replica takes **shares** of a rate's or a quota's count: it counts
several calls on Redis at once and admits that many without asking again, for at most
:data:`SHARE_SECONDS`. A Redis round trip costs a replica ~100 µs of CPU (redis-py's
asyncio client), as much as the rest of a proxied call; a share makes it one round trip
every so many calls. What a share never does is admit more than the limit: the calls
in it were counted on Redis before any is admitted. Far from the limit a share grows
(doubling while it is used up within its time, halving when it lapses unused), up to
1/:data:`SHARE_FRACTION` of the limit; near it, a replica asks for one call at a time,
so two replicas still share a count exactly. What a share can do is refuse early: calls
a replica holds and does not use (no more calls came to it) stay counted until its
window or period moves on (a quota's are given back on the replica's next call). And a
rate's share may be spent up to :data:`SHARE_SECONDS` (a quarter of the window at most)
after Redis counted it.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from limits.aio.storage import RedisStorage as AsyncRedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter as AsyncSlidingWindow
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

# The longest a replica holds a share of a count before it lapses.
SHARE_SECONDS = 1.0
# A share is at most this fraction of its limit (and a limit under twice this many
# calls is counted one call at a time).
SHARE_FRACTION = 16
_MAX_SHARES = 65_536


@dataclass(slots=True)
class Renewal:
    """A round trip to Redis for more of a share, which calls arriving meanwhile wait
    for instead of each making their own (a burst of calls is one round trip, not one
    connection each)."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    refused: float | None = None  # refused: when the count lets a call in again


@dataclass(slots=True)
class Share:
    """Calls this replica has counted on Redis and may admit without asking again."""

    left: int = 0
    until: float = 0.0  # monotonic: when the share lapses
    ends: float = math.inf  # wall clock: a quota share ends with its period
    size: int = 1  # calls to ask for next time
    renewal: Renewal | None = None

    def take(self, now: float) -> bool:
        """Admit one call from the share, if it holds one that has not lapsed."""
        if self.left > 0 and now < self.until:
            self.left -= 1
            return True
        return False

    def renew(self, now: float, limit: int) -> tuple[int, int]:
        """How many calls to ask for now, and how many lapsed unused (dropped from the
        share; shrinking it, since this replica did not need them)."""
        lapsed = 0
        if self.left > 0:
            lapsed, self.left = self.left, 0
            self.size = max(1, self.size // 2)
        cap = limit // SHARE_FRACTION
        return (min(self.size, cap) if cap > 1 else 1), lapsed

    def granted(self, calls: int, until: float, limit: int) -> None:
        """Redis counted ``calls`` more for this replica (one of them admitted now)."""
        self.left += calls - 1
        self.until = until
        self.size = min(self.size * 2, max(1, limit // SHARE_FRACTION))


class SweptMemoryStorage(MemoryStorage):
    """``limits``' in-process storage, sweeping expired counts at most once a second.

    The library's own schedules its sweep (a timer thread) after every operation once
    the last sweep is over: a thread started every 10 ms under load. Expired counts are
    dropped when read anyway; the sweep only frees memory."""

    _swept = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:  # the base's, by its mangled name
        now = time.monotonic()
        if now - self._swept >= 1.0 and not self.timer.is_alive():
            self._swept = now
            sweep = getattr(self, "_MemoryStorage__expire_events")  # noqa: B009 (mangled)
            self.timer = threading.Timer(0.01, sweep)
            self.timer.daemon = True
            self.timer.start()


# limits wraps these methods of every storage class (its own and subclasses, so twice
# here) to turn backend errors into its StorageError; the in-process storage raises
# none, and the wrappers were a third of a counted call's cost.
for _method in ("incr", "get", "get_expiry", "check", "reset", "clear"):
    _plain = getattr(MemoryStorage, _method)
    setattr(SweptMemoryStorage, _method, getattr(_plain, "__wrapped__", _plain))


class Counts:
    """``limits``' storage and sliding-window strategy behind one awaitable interface:
    on Redis its asyncio flavour, taken in shares; in process its plain one, called
    directly (the asyncio flavour wraps each of the dozen storage steps of a hit in
    coroutines of its own, which is most of what a limit costs a call)."""

    def __init__(self, redis_url: str | None, key_prefix: str) -> None:
        self.storage: Any
        self.windows: Any
        self.blocking = redis_url is not None
        self.shares: dict[str, Share] = {}
        self.round_trips = 0  # counts asked of Redis for calls (shares make them rare)
        if redis_url:
            uri = redis_url if redis_url.startswith("async+") else f"async+{redis_url}"
            self.storage = AsyncRedisStorage(
                uri,
                implementation="redispy",
                key_prefix=f"{key_prefix}:limits",
                wrap_exceptions=True,
                socket_timeout=1.0,
                socket_connect_timeout=1.0,
            )
            self.windows = AsyncSlidingWindow(self.storage)
        else:
            self.storage = SweptMemoryStorage()
            self.windows = SlidingWindowCounterRateLimiter(self.storage)

    def share(self, key: str) -> Share:
        """This replica's share of the count under ``key`` (Redis only)."""
        found = self.shares.get(key)
        if found is None:
            if len(self.shares) >= _MAX_SHARES:
                self.shares.clear()
            found = self.shares[key] = Share()
        return found

    async def hit(
        self, key: str, limit: int, window: int, item: Any, ids: tuple[str, ...]
    ) -> float | None:
        """One call into the sliding window under ``key`` (what the strategy's ``hit``
        does, with the key made once per caller and tool rather than per call): None
        when admitted, else when the window lets a call in again (wall clock)."""
        if not self.blocking:
            if self.storage.acquire_sliding_window_entry(key, limit, window):
                return None
            return float(self.windows.get_window_stats(item, *ids).reset_time)
        share = self.share(key)

        async def renew() -> float | None:
            now = time.monotonic()
            ask, _ = share.renew(now, limit)  # a rate's lapsed calls cannot be given back
            self.round_trips += 1
            if await self.storage.acquire_sliding_window_entry(key, limit, window, ask):
                share.granted(ask, now + min(SHARE_SECONDS, window / 4), limit)
                return None
            if ask > 1:
                share.size = 1  # near the limit: one call at a time, exactly
                self.round_trips += 1
                if await self.storage.acquire_sliding_window_entry(key, limit, window):
                    return None
            stats = await self.windows.get_window_stats(item, *ids)
            return float(stats.reset_time)

        return await self._through(share, renew)

    @staticmethod
    async def _through(share: Share, renew: Callable[[], Awaitable[float | None]]) -> float | None:
        """Admit a call from ``share``, renewing it when it is spent: one renewal at a
        time; calls that waited for one that was refused are refused with it."""
        while not share.take(time.monotonic()):
            pending = share.renewal
            if pending is None:
                renewal = share.renewal = Renewal()
                try:
                    renewal.refused = await renew()
                    return renewal.refused
                finally:
                    share.renewal = None
                    renewal.done.set()
            await pending.done.wait()
            if pending.refused is not None:
                return pending.refused
        return None

    async def count_in(self, key: str, share_key: str, limit: int, ttl: int, ends: float) -> bool:
        """One call into the plain counter under ``key`` (a quota's period), refused
        past ``limit``; on Redis through this replica's share of it (``share_key``,
        ending at ``ends`` on the wall clock with the period)."""
        if not self.blocking:
            if int(self.storage.incr(key, ttl)) > limit:
                self.storage.incr(key, ttl, -1)
                return False
            return True
        share = self.share(share_key)
        if share.ends != ends:  # a new period: what was held belonged to the last one
            share.left, share.ends = 0, ends

        async def renew() -> float | None:
            now = time.monotonic()
            ask, lapsed = share.renew(now, limit)
            self.round_trips += 1
            value = int(await self.storage.incr(key, ttl, ask - lapsed))  # lapsed: given back
            over = value - limit
            if over > 0:
                await self.storage.incr(key, ttl, -min(over, ask))
                if over >= ask:
                    share.size = 1
                    return ends
                ask -= over
            share.granted(ask, now + SHARE_SECONDS, limit)
            return None

        return await self._through(share, renew) is None

    async def window(self, item: Any, ids: tuple[str, ...]) -> Any:
        """(reset time, remaining) of a rate's window."""
        if self.blocking:
            return await self.windows.get_window_stats(item, *ids)
        return self.windows.get_window_stats(item, *ids)

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        if self.blocking:
            return int(await self.storage.incr(key, expiry, amount))
        return int(self.storage.incr(key, expiry, amount))

    async def get(self, key: str) -> int:
        if self.blocking:
            return int(await self.storage.get(key))
        return int(self.storage.get(key))
