"""Live job events for the subscribers of one gateway process.

Events live in the database (so any replica can serve any job's stream); this hub
makes following them cheap. Per process, one loop looks at the jobs someone is
watching — one query for all of them — when woken (Redis pub/sub from whichever
process wrote, or a local write) or every ``poll`` seconds, fetches each changed job's
new events once, and hands them to every subscriber of that job. A hundred
subscribers of a job cost one query per change, not a hundred.

A subscriber that falls behind the hub's short in-memory window, or joins late,
reads the gap from the database: events are numbered 1, 2, 3… per job with no gaps,
so a gap is always noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator

from gateway.db import Database
from gateway.jobs import repository as repo
from gateway.jobs.bus import EVENTS_CHANNEL
from gateway.jobs.models import JobEvent

log = logging.getLogger("gateway.jobs")

WINDOW = 1000  # events of a job the hub keeps for its subscribers


class _Watch:
    """One watched job: the newest events fetched, and the subscribers' wake-up."""

    def __init__(self, job_id: str, cursor: int) -> None:
        self.job_id = job_id
        self.cursor = cursor  # highest seq fetched
        self.recent: deque[JobEvent] = deque(maxlen=WINDOW)
        self.changed = asyncio.Condition()
        self.subscribers = 0

    def since(self, seq: int) -> list[JobEvent] | None:
        """Events after ``seq`` from memory; None when memory does not reach back that far."""
        if seq >= self.cursor:
            return []
        if not self.recent or self.recent[0].seq > seq + 1:
            return None
        return [e for e in self.recent if e.seq > seq]


class EventHub:
    """Follows job events for this process's subscribers (see the module docstring)."""

    def __init__(self, db: Database, poll: float, redis_url: str | None = None) -> None:
        self.db = db
        self.poll = poll
        self.redis_url = redis_url
        self._watches: dict[str, _Watch] = {}
        self._wake = asyncio.Event()
        self._watched = asyncio.Event()  # set while some job is watched

    def wake(self) -> None:
        """Look for new events now (this process wrote some)."""
        self._wake.set()

    async def run(self) -> None:
        """The hub's loop (a background task of the app), with the Redis listener."""
        listener = None
        if self.redis_url:
            listener = asyncio.create_task(self._listen(), name="job-events-listener")
        try:
            while True:
                await self._watched.wait()  # an idle process does not poll
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll):
                        await self._wake.wait()
                self._wake.clear()
                if self._watches:
                    try:
                        await self._refresh()
                    except Exception:  # the next round tries again
                        log.exception("reading job events failed")
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _listen(self) -> None:
        import redis.asyncio as aioredis

        while True:
            client = aioredis.from_url(self.redis_url or "")
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(EVENTS_CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        job_id = message["data"].decode()
                        if job_id in self._watches:
                            self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # polling carries on meanwhile
                log.warning("job wake-ups from Redis lost; retrying", extra={"error": str(exc)})
                await asyncio.sleep(1.0)
            finally:
                await client.aclose()

    async def _refresh(self) -> None:
        watches = dict(self._watches)
        async with self.db.session() as session:
            seqs = await repo.last_seqs(session, watches)
            for job_id, watch in watches.items():
                if seqs.get(job_id, 0) <= watch.cursor:
                    continue
                rows = await repo.events_after(session, job_id, watch.cursor, limit=WINDOW)
                if not rows:
                    continue
                watch.recent.extend(rows)
                watch.cursor = rows[-1].seq
                async with watch.changed:
                    watch.changed.notify_all()
                if len(rows) == WINDOW:
                    self._wake.set()  # more to read: another round at once

    @contextlib.asynccontextmanager
    async def watching(self, job_id: str, cursor: int) -> AsyncIterator[_Watch]:
        """Watch ``job_id`` for the duration (``cursor``: the highest seq already read)."""
        watch = self._watches.get(job_id)
        if watch is None:
            watch = self._watches[job_id] = _Watch(job_id, cursor)
        watch.subscribers += 1
        self._watched.set()
        try:
            yield watch
        finally:
            watch.subscribers -= 1
            if watch.subscribers == 0 and self._watches.get(job_id) is watch:
                del self._watches[job_id]
                if not self._watches:
                    self._watched.clear()

    async def follow(self, job_id: str, after: int) -> AsyncIterator[JobEvent]:
        """Every event of the job with ``seq > after``, in order, then live ones, forever
        (the caller stops at a terminal event)."""
        last = after
        while True:  # from the database until caught up
            async with self.db.session() as session:
                rows = await repo.events_after(session, job_id, last)
            for row in rows:
                last = row.seq
                yield row
            if len(rows) < 500:
                break
        async with self.watching(job_id, last) as watch:
            while True:
                fresh = watch.since(last)
                if fresh is None:  # behind the window: read the gap from the database
                    async with self.db.session() as session:
                        fresh = list(await repo.events_after(session, job_id, last))
                for row in fresh:
                    if row.seq == last + 1:
                        last = row.seq
                        yield row
                if not fresh:
                    await _wait_past(watch, last)


async def _wait_past(watch: _Watch, seq: int) -> None:
    """Until the hub has fetched an event after ``seq``."""
    async with watch.changed:
        await watch.changed.wait_for(lambda: watch.cursor > seq)
