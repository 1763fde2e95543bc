"""Rate limits, concurrency limits, calendar quotas and budgets: the counting behind
the call pipeline's ``limit`` stage.

Counts live in the ``limits`` library's storage: in process for the embedded default,
on Redis (``MCPGW_REDIS_URL``) so that every gateway process shares them, with atomic
operations (a Lua script per window hit, INCRBY for counters).

- **rate** ``N/unit`` with ``burst`` B: at most B calls per window of B/N units, so the
  average is N per unit and no more than B go at once (a token bucket's promise). The
  library's sliding window counter keeps it in O(1) per call: two counters, the last
  window's weighted by how much of it still overlaps (its moving window keeps every
  hit, which costs a list operation the size of the burst per call).
- **concurrency**: calls in flight, counted up on entry and down on exit.
- **quota** ``N/day|month``: a counter per calendar period (UTC), reset at its boundary.
- **budget**: an estimated cost per call summed per period; past ``log_at`` it is
  logged, past ``warn_at`` the agent's result carries a warning, at the limit calls
  are refused until the period ends.

Each limit is counted separately for each combination of its ``scope`` values (a
``[key, tool]`` limit keeps one count per key and tool), so a limit on one server never
slows another.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage as AsyncRedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter as AsyncSlidingWindow
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from gateway.errors import AppError
from gateway.policy import globs
from gateway.policy.document import Limit, parse_quota, parse_rate
from gateway.policy.engine import CompiledPolicy, SubjectLike, SubjectMatch, TargetIndex

log = logging.getLogger("gateway.policy.limits")

_MICRO = 1_000_000  # budgets are counted in millionths of a cost unit
# A call in flight longer than this is forgotten by a concurrency count (a process that
# died mid-call must not hold its slot for ever).
_IN_FLIGHT_TTL = 3600


class LimitExceeded(AppError):
    """A call a limit refused: 429 on REST (with ``Retry-After`` and ``RateLimit-*``),
    JSON-RPC error :data:`JSONRPC_CODE` on MCP, with the same ``data``."""

    status_code = 429
    code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        code: str,
        limit: str,
        kind: str,
        scope: dict[str, str],
        allowed: float,
        retry_after: float,
        resets_at: datetime | None = None,
    ) -> None:
        super().__init__(
            message,
            code=code,
            limit=limit,
            kind=kind,
            scope=scope,
            retryAfter=max(1, math.ceil(retry_after)),
            resetsAt=resets_at.isoformat() if resets_at else None,
        )
        self.limit, self.kind, self.allowed = limit, kind, allowed
        self.retry_after = max(1, math.ceil(retry_after))

    def headers(self) -> dict[str, str]:
        """``Retry-After`` and the IETF draft's ``RateLimit-*`` fields."""
        quota = int(self.allowed) if float(self.allowed).is_integer() else self.allowed
        return {
            "Retry-After": str(self.retry_after),
            "RateLimit-Limit": str(quota),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(self.retry_after),
            "RateLimit-Policy": f'"{self.limit}";q={quota}',
        }

    def rpc_data(self) -> dict[str, Any]:
        """The JSON-RPC error's ``data``."""
        return {"code": self.code, "message": self.message, **self.details}


# The JSON-RPC error code of a limited call (implementation-defined server error range;
# 429 in its last digits). Documented in docs/policy.md.
JSONRPC_CODE = -32029


class LimitsUnavailable(LimitExceeded):
    """The shared counts could not be read and the failure mode is ``closed``."""

    status_code = 503


@dataclass(slots=True)
class CompiledLimit:
    index: int
    spec: Limit
    kind: str
    excluded: globs.Matcher | None = None
    subject: Callable[[SubjectLike], bool] | None = None
    item: Any = None  # the window (rate)
    window: int = 0  # its length in seconds
    count: int = 0  # calls (rate burst, concurrency, quota) or micro-units (budget)
    period: str = ""  # quota/budget: day or month

    @property
    def id(self) -> str:
        return self.spec.id


@dataclass(frozen=True, slots=True)
class Counted:
    """One count a call is held to: a limit, for one combination of scope values."""

    limit: CompiledLimit
    scope: dict[str, str]
    ids: tuple[str, ...]
    window: str  # the rate window's storage key

    @classmethod
    def of(cls, limit: CompiledLimit, scope: dict[str, str]) -> Counted:
        ids = (limit.id, *(f"{k}={v}" for k, v in scope.items()))
        window = limit.item.key_for(*ids) if limit.item is not None else ""
        return cls(limit, scope, ids, window)


@dataclass(slots=True)
class Admission:
    """What a call took that its end gives back or adds to."""

    in_flight: list[str] = field(default_factory=list)  # concurrency keys to count down
    budgets: list[tuple[CompiledLimit, str, int]] = field(default_factory=list)  # key, ttl
    warnings: list[str] = field(default_factory=list)


def period_bounds(now: float, period: str) -> tuple[str, datetime]:
    """The calendar period (UTC) ``now`` falls in: its name and when it ends."""
    moment = datetime.fromtimestamp(now, UTC)
    if period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        end = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=UTC)
        return start.date().isoformat(), end
    year, month = moment.year, moment.month
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return f"{year:04d}-{month:02d}", end


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
    on Redis its asyncio flavour; in process its plain one, called directly (the
    asyncio flavour wraps each of the dozen storage steps of a hit in coroutines of its
    own, which is most of what a limit costs a call)."""

    def __init__(self, redis_url: str | None, key_prefix: str) -> None:
        self.storage: Any
        self.windows: Any
        self.blocking = redis_url is not None
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

    async def hit(self, key: str, limit: int, window: int) -> bool:
        """One call into the sliding window under ``key`` (what the strategy's ``hit``
        does, with the key made once per caller and tool rather than per call)."""
        if self.blocking:
            return bool(await self.storage.acquire_sliding_window_entry(key, limit, window))
        return bool(self.storage.acquire_sliding_window_entry(key, limit, window))

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


class Limiter:
    """The limits of the policy in force, counted in one storage."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        failure_mode: str = "open",
        key_prefix: str = "mcpgw",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.counts = Counts(redis_url, key_prefix)
        self.kind = "redis" if redis_url else "memory"
        self.failure_mode = failure_mode
        self.prefix = key_prefix
        self.clock = clock
        self.limits: list[CompiledLimit] = []
        self.costs: list[tuple[globs.Matcher, float]] = []
        self._index: TargetIndex[CompiledLimit] = TargetIndex()
        self._cache: dict[str, tuple[CompiledLimit, ...]] = {}
        self._plans: dict[int, tuple[SubjectLike, dict[str, tuple[Counted, ...]]]] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self.failures = 0  # storage errors seen (reported on /metrics)

    # --- the policy's limits -----------------------------------------------------------
    def load(self, policy: CompiledPolicy) -> None:
        """Count by the limits of ``policy`` from now on (counts already kept stay)."""
        index: TargetIndex[CompiledLimit] = TargetIndex()
        compiled = []
        for i, spec in enumerate(policy.document.limits):
            limit = CompiledLimit(
                index=i,
                spec=spec,
                kind=spec.kind,
                subject=None if spec.subjects.everyone else SubjectMatch(spec.subjects),
            )
            if spec.rate:
                count, seconds = parse_rate(spec.rate)
                burst = spec.burst or count
                window = max(1, math.ceil(burst * seconds / count))
                limit.item, limit.count = RateLimitItemPerSecond(burst, window), burst
                limit.window = window
            elif spec.concurrency:
                limit.count = spec.concurrency
            elif spec.quota:
                limit.count, limit.period = parse_quota(spec.quota)
            elif spec.budget:
                limit.count = int(spec.budget.limit * _MICRO)
                limit.period = spec.budget.period
            for pattern in dict.fromkeys(spec.targets):
                index.add(pattern, limit)
            compiled.append(limit)
        self.costs = [(globs.compile_any(tuple(c.targets)), c.cost) for c in policy.document.costs]
        self.limits, self._index, self._cache, self._plans = compiled, index, {}, {}

    @property
    def active(self) -> bool:
        return bool(self.limits)

    def covering(self, target: str) -> tuple[CompiledLimit, ...]:
        found = self._cache.get(target)
        if found is None:
            found = self._index.find(target)
            if len(self._cache) >= 65_536:
                self._cache.clear()
            self._cache[target] = found
        return found

    def cost_of(self, target: str, bytes_out: int | None) -> float:
        """A call's estimated cost: the policy's ``costs`` entry for the tool, else its
        result's tokens (about 4 bytes each) per thousand."""
        for match, cost in self.costs:
            if match(target):
                return cost
        return (bytes_out or 0) / 4 / 1000

    # --- a call ------------------------------------------------------------------------
    async def admit(self, subject: SubjectLike, server: str, target: str) -> Admission | None:
        """Count a call in, or raise :class:`LimitExceeded` naming the limit it is over.
        None: nothing to give back when it ends."""
        plan = self._plan(subject, server, target)
        if not plan:
            return None
        if not self.counts.blocking and all(c.limit.kind == "rate" for c in plan):
            self._rates_now(plan)  # in process: no coroutine per limit
            return None
        admission: Admission | None = None
        for counted in plan:
            try:
                try:
                    admission = await self._admit(counted, admission)
                except LimitExceeded:
                    raise
                except Exception as exc:  # the storage failed (Redis down)
                    self._failed(exc, counted.limit)
            except LimitExceeded:
                if admission is not None:  # give back what earlier limits took
                    self.release(admission, target, None)
                raise
        return admission

    def _plan(self, subject: SubjectLike, server: str, target: str) -> tuple[Counted, ...]:
        """What a call of ``target`` by ``subject`` counts against, worked out once per
        caller and target (callers are the authenticator's cached objects)."""
        mine = self._plans.get(id(subject))
        if mine is None or mine[0] is not subject:
            if len(self._plans) >= 4096:
                self._plans.clear()
            mine = self._plans[id(subject)] = (subject, {})
        plan = mine[1].get(target)
        if plan is None:
            plan = mine[1][target] = tuple(
                Counted.of(limit, scope)
                for limit in self.covering(target)
                if limit.subject is None or limit.subject(subject)
                for scope in _scopes(limit.spec.scope, subject, server, target)
            )
        return plan

    def _rates_now(self, plan: tuple[Counted, ...]) -> None:
        """Count rates kept in process (what :meth:`_admit` does for them, without its
        awaits: the plain storage answers at once)."""
        storage = self.counts.storage
        for counted in plan:
            limit = counted.limit
            if not storage.acquire_sliding_window_entry(counted.window, limit.count, limit.window):
                stats = self.counts.windows.get_window_stats(limit.item, *counted.ids)
                retry = stats.reset_time - time.time()
                raise self._exceeded(limit, counted.scope, "rate_limited", retry, None)

    async def _admit(self, counted: Counted, admission: Admission | None) -> Admission | None:
        limit, scope, ids = counted.limit, counted.scope, counted.ids
        if limit.kind == "rate":
            if not await self.counts.hit(counted.window, limit.count, limit.window):
                stats = await self.counts.window(limit.item, ids)
                retry = stats.reset_time - time.time()
                raise self._exceeded(limit, scope, "rate_limited", retry, None)
            return admission
        key = ":".join(ids)
        if limit.kind == "concurrency":
            key = f"inflight:{key}"
            if await self.counts.incr(key, _IN_FLIGHT_TTL) > limit.count:
                await self.counts.incr(key, _IN_FLIGHT_TTL, -1)
                raise self._exceeded(limit, scope, "concurrency_limited", 1, None)
            admission = admission or Admission()
            admission.in_flight.append(key)
            return admission
        now = self.clock()
        name, ends = period_bounds(now, limit.period)
        ttl = max(1, math.ceil(ends.timestamp() - now)) + 60
        key = f"{limit.kind}:{key}:{name}"
        if limit.kind == "quota":
            if await self.counts.incr(key, ttl) > limit.count:
                await self.counts.incr(key, ttl, -1)
                raise self._exceeded(limit, scope, "quota_exceeded", ends.timestamp() - now, ends)
            return admission
        spent = await self.counts.get(key)
        if spent >= limit.count:
            raise self._exceeded(limit, scope, "budget_exceeded", ends.timestamp() - now, ends)
        admission = admission or Admission()
        admission.budgets.append((limit, key, ttl))
        budget = limit.spec.budget
        if budget is not None and spent >= budget.warn_at * limit.count:
            admission.warnings.append(
                f"budget {limit.id!r} is {spent / limit.count:.0%} spent "
                f"({spent / _MICRO:g} of {limit.count / _MICRO:g} this {limit.period}; "
                f"resets {ends.isoformat()})"
            )
        return admission

    def _exceeded(
        self,
        limit: CompiledLimit,
        scope: dict[str, str],
        code: str,
        retry_after: float,
        resets_at: datetime | None,
    ) -> LimitExceeded:
        spec = limit.spec
        what = {
            "rate_limited": f"rate limit {limit.id!r} ({spec.rate}, burst {limit.count})",
            "concurrency_limited": f"concurrency limit {limit.id!r} ({limit.count} in flight)",
            "quota_exceeded": f"quota {limit.id!r} ({spec.quota})",
            "budget_exceeded": f"budget {limit.id!r} ({limit.count / _MICRO:g} a {limit.period})",
        }[code]
        counted = ", ".join(f"{k} {v}" for k, v in scope.items()) or "everyone"
        when = f"; it resets at {resets_at.isoformat()}" if resets_at else ""
        allowed = limit.count / _MICRO if limit.kind == "budget" else limit.count
        wait = max(1, math.ceil(retry_after))
        return LimitExceeded(
            f"{what} is reached for {counted}{when}; retry after {wait} s",
            code=code,
            limit=limit.id,
            kind=limit.kind,
            scope=scope,
            allowed=allowed,
            retry_after=retry_after,
            resets_at=resets_at,
        )

    def _failed(self, exc: Exception, limit: CompiledLimit) -> None:
        self.failures += 1
        if self.failures == 1 or self.failures % 1000 == 0:
            log.warning(
                "limit storage (%s) failed (%s; %d so far): %s",
                self.kind,
                type(exc).__name__,
                self.failures,
                "allowing calls (MCPGW_RATE_LIMIT_FAILURE_MODE=open)"
                if self.failure_mode == "open"
                else "refusing calls (MCPGW_RATE_LIMIT_FAILURE_MODE=closed)",
            )
        if self.failure_mode == "closed":
            raise LimitsUnavailable(
                f"limit {limit.id!r} cannot be checked: the limit storage is unreachable",
                code="limits_unavailable",
                limit=limit.id,
                kind=limit.kind,
                scope={},
                allowed=limit.count,
                retry_after=1,
            )

    def release(self, admission: Admission, target: str, bytes_out: int | None) -> None:
        """The call ended: count its in-flight slots down and add its cost (off the
        caller's path: a task of its own)."""
        cost = 0
        if admission.budgets:
            cost = int(self.cost_of(target, bytes_out) * _MICRO)
        task = asyncio.get_running_loop().create_task(self._release(admission, cost))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _release(self, admission: Admission, cost: int) -> None:
        try:
            for key in admission.in_flight:
                await self.counts.incr(key, _IN_FLIGHT_TTL, -1)
            if cost > 0:
                for limit, key, ttl in admission.budgets:
                    spent = await self.counts.incr(key, ttl, cost)
                    self._crossed(limit, spent - cost, spent)
        except Exception as exc:
            self.failures += 1
            log.warning("limit storage (%s) failed counting a call out: %s", self.kind, exc)

    def _crossed(self, limit: CompiledLimit, before: int, after: int) -> None:
        budget = limit.spec.budget
        if budget is None:
            return
        for mark, what in ((budget.log_at, "logged"), (budget.warn_at, "warned")):
            level = mark * limit.count
            if before < level <= after:
                log.warning(
                    "budget %r passed %.0f%% (%g of %g this %s; past here agents are %s)",
                    limit.id,
                    mark * 100,
                    after / _MICRO,
                    limit.count / _MICRO,
                    limit.period,
                    what,
                )

    async def usage(self, subject: SubjectLike, target: str | None = None) -> list[dict[str, Any]]:
        """What is left of each limit that applies to ``subject`` (and, for limits counted
        per server or tool, to ``target``; without one those are left out)."""
        found: list[dict[str, Any]] = []
        server = target.partition("__")[0] if target else ""
        limits = self.covering(target) if target else tuple(self.limits)
        for limit in limits:
            if limit.subject is not None and not limit.subject(subject):
                continue
            if target is None and {"server", "tool"} & set(limit.spec.scope):
                continue
            for scope in _scopes(limit.spec.scope, subject, server, target or ""):
                found.append(await self._usage(limit, scope))
        return found

    async def _usage(self, limit: CompiledLimit, scope: dict[str, str]) -> dict[str, Any]:
        ids = (limit.id, *(f"{k}={v}" for k, v in scope.items()))
        allowed: float = limit.count
        resets: datetime | None = None
        if limit.kind == "rate":
            stats = await self.counts.window(limit.item, ids)
            used: float = limit.count - stats.remaining
            resets = datetime.fromtimestamp(stats.reset_time, UTC) if used else None
        elif limit.kind == "concurrency":
            used = await self.counts.get(f"inflight:{':'.join(ids)}")
        else:
            name, resets = period_bounds(self.clock(), limit.period)
            used = await self.counts.get(f"{limit.kind}:{':'.join(ids)}:{name}")
            if limit.kind == "budget":
                used, allowed = used / _MICRO, limit.count / _MICRO
        return {
            "limit": limit.id,
            "kind": limit.kind,
            "scope": scope,
            "allowed": allowed,
            "used": used,
            "remaining": max(0, allowed - used),
            "resets_at": resets,
        }

    async def drain(self) -> None:
        """Wait for counts still being written (shutdown, tests)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


def _scopes(
    parts: Sequence[str], subject: SubjectLike, server: str, target: str
) -> list[dict[str, str]]:
    """The counted combinations for one call: one, or one per team for ``team``; none
    when the call has no value for a part (a team limit and a caller in no team)."""
    base: dict[str, str] = {}
    teams: tuple[str, ...] = ()
    for part in parts:
        if part == "key":
            base["key"] = subject.key_id or f"user:{subject.user_id}"
        elif part == "user":
            base["user"] = subject.user_id
        elif part == "server":
            base["server"] = server
        elif part == "tool":
            base["tool"] = target
        elif part == "team":
            teams = subject.team_ids
            if not teams:
                return []
    if not teams:
        return [base]
    return [{**base, "team": team} for team in teams]
