"""Rate limits, concurrency limits, calendar quotas and budgets: the counting behind
the call pipeline's ``limit`` stage.

Counts live in the ``limits`` library's storage (gateway/policy/counts.py): in process
for the embedded default, on Redis (``MCPGW_REDIS_URL``) so that every gateway process
shares them, with atomic operations (a Lua script per window hit, INCRBY for counters),
rates and quotas taken in shares so that most calls need no round trip.

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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from limits import RateLimitItemPerSecond

from gateway.errors import AppError
from gateway.policy import globs
from gateway.policy.counts import Counts
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
    key: str  # the count's name: a rate's window key, the stem of the others' keys
    shared: bool  # counted in shares on Redis (rates and quotas)

    @classmethod
    def of(cls, limit: CompiledLimit, scope: dict[str, str]) -> Counted:
        ids = (limit.id, *(f"{k}={v}" for k, v in scope.items()))
        if limit.item is not None:
            return cls(limit, scope, ids, limit.item.key_for(*ids), True)
        return cls(limit, scope, ids, f"{limit.kind}:{':'.join(ids)}", limit.kind == "quota")


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
        if self.counts.blocking:
            if self._from_shares(plan):  # on Redis: admitted from what this replica holds
                return None
        elif all(c.limit.kind == "rate" for c in plan):
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

    def _from_shares(self, plan: tuple[Counted, ...]) -> bool:
        """Admit a call from this replica's shares of every count it is held to, without
        a round trip to Redis; False (nothing taken) unless every one holds a call."""
        shares = self.counts.shares
        now = time.monotonic()
        held = []
        for counted in plan:
            share = shares.get(counted.key) if counted.shared else None
            if share is None or share.left <= 0 or now >= share.until:
                return False
            if share.ends != math.inf and self.clock() >= share.ends:
                return False  # a quota's period is over
            held.append(share)
        for share in held:
            share.left -= 1
        return True

    def _rates_now(self, plan: tuple[Counted, ...]) -> None:
        """Count rates kept in process (what :meth:`_admit` does for them, without its
        awaits: the plain storage answers at once)."""
        storage = self.counts.storage
        for counted in plan:
            limit = counted.limit
            if not storage.acquire_sliding_window_entry(counted.key, limit.count, limit.window):
                stats = self.counts.windows.get_window_stats(limit.item, *counted.ids)
                retry = stats.reset_time - time.time()
                raise self._exceeded(limit, counted.scope, "rate_limited", retry, None)

    async def _admit(self, counted: Counted, admission: Admission | None) -> Admission | None:
        limit, scope, ids = counted.limit, counted.scope, counted.ids
        if limit.kind == "rate":
            resets = await self.counts.hit(counted.key, limit.count, limit.window, limit.item, ids)
            if resets is not None:
                raise self._exceeded(limit, scope, "rate_limited", resets - time.time(), None)
            return admission
        if limit.kind == "concurrency":
            key = f"inflight:{':'.join(ids)}"
            if await self.counts.incr(key, _IN_FLIGHT_TTL) > limit.count:
                await self.counts.incr(key, _IN_FLIGHT_TTL, -1)
                raise self._exceeded(limit, scope, "concurrency_limited", 1, None)
            admission = admission or Admission()
            admission.in_flight.append(key)
            return admission
        now = self.clock()
        name, ends = period_bounds(now, limit.period)
        ttl = max(1, math.ceil(ends.timestamp() - now)) + 60
        key = f"{counted.key}:{name}"
        if limit.kind == "quota":
            if not await self.counts.count_in(key, counted.key, limit.count, ttl, ends.timestamp()):
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
