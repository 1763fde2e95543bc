"""The audit writer: the request path enqueues, batches go to a sink, nothing is dropped.

- :meth:`AuditWriter.record` appends to an in-memory queue (no I/O, no await).
- :meth:`AuditWriter.run` takes a batch when ``batch_size`` rows wait or every
  ``interval`` seconds, reads out what only this process has (the actor, the client,
  the answer's size: rows.to_wire) and hands the batch to its sink: the audit writer
  process (sink.py; masking, hashing and the database's work happen there, off this
  process's interpreter) or a store in this process (store.py).
- When the queue (with the rows the sink has not yet stored) holds ``max_queue`` rows,
  callers wait (``room()``, at most ``full_wait`` seconds) before their call goes on;
  past that the row is still queued.
- At shutdown :meth:`flush` hands over everything queued and waits until the sink has
  stored (or spilled) it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Callable
from typing import Protocol

from gateway.audit.entry import AuditEntry
from gateway.audit.rows import Wire, to_wire
from gateway.audit.store import StoreMetrics
from gateway.observability.masking import SecretMask

log = logging.getLogger("gateway.audit")


class WriterMetrics(StoreMetrics, Protocol):
    """Where the writer reports its queue, and its store its batches and trouble."""

    def audit_waited(self, timed_out: bool) -> None:
        """A caller waited for room in a full queue (``timed_out``: it stopped waiting)."""

    def audit_queue(self, depth: Callable[[], int]) -> None:
        """``depth()`` is the queue's current length (read when scraped)."""


class Deferred(Protocol):
    """What a hot path may record instead of an :class:`AuditEntry`: the objects it has
    at hand, read out straight into a row on the wire (rows.wire)."""

    def audit_wire(self, event_id: str) -> Wire:
        """The row, under ``event_id`` (called at once, in the recording context)."""


class Sink(Protocol):
    """Where the writer's batches go: it stores them, spills them or keeps them, in order."""

    @property
    def stream(self) -> str:
        """The hash chain its rows join (a new one whenever a store starts)."""

    @property
    def in_flight(self) -> int:
        """Rows handed over and not yet stored or spilled."""

    async def start(self) -> None:
        """Get ready (read back rows an earlier process spilled)."""

    async def deliver(self, wires: list[Wire], masks: list[tuple[str, ...]]) -> None:
        """Take a batch (``masks``: the server secrets its rows' last field indexes)."""

    async def drain(self) -> None:
        """Return once every batch handed over is stored or spilled (or, if neither
        works, kept and reported)."""

    async def close(self) -> None:
        """Drain, then let go of what the sink runs on."""


class AuditWriter:
    """One per process; see the module docstring."""

    def __init__(
        self,
        sink: Sink,
        *,
        batch_size: int = 500,
        interval: float = 0.5,
        max_queue: int = 100_000,
        full_wait: float = 2.0,
        metrics: WriterMetrics | None = None,
    ) -> None:
        self.sink = sink
        self.batch_size = batch_size
        self.interval = interval
        self.max_queue = max_queue
        self.full_wait = full_wait
        self.metrics = metrics
        self._seq = 0
        self._queue: deque[Wire] = deque()
        self._id_prefix = os.urandom(10).hex()
        self._wake: asyncio.Event | None = None
        self._room: asyncio.Event | None = None
        self._lock = asyncio.Lock()  # one batch at a time keeps the chain in order
        if metrics is not None:
            metrics.audit_queue(lambda: len(self._queue) + sink.in_flight)

    @property
    def stream(self) -> str:
        return self.sink.stream

    # --- the request path ---------------------------------------------------------------
    def record(self, entry: AuditEntry | Deferred) -> None:
        """Queue ``entry`` (no I/O), read out at once: what it refers to (the call, its
        request) is freed now rather than surviving into older GC generations."""
        queue = self._queue
        self._seq = seq = self._seq + 1
        # Unique without a random read per row: the writer's random part and a count.
        event_id = f"{self._id_prefix}{seq:012x}"
        try:
            if isinstance(entry, AuditEntry):
                queue.append(to_wire(entry, event_id, entry.mask or None))
            else:
                queue.append(entry.audit_wire(event_id))
        except Exception:  # a row that cannot be read out is still recorded, plainly
            log.exception("could not form an audit row")
            plain = AuditEntry(action="unknown", outcome="error", error="unrecordable")
            queue.append(to_wire(plain, event_id, None))
        if len(queue) >= self.batch_size and self._wake is not None:
            self._wake.set()

    @property
    def full(self) -> bool:
        return len(self._queue) + self.sink.in_flight >= self.max_queue

    async def room(self) -> None:
        """Wait (at most ``full_wait`` s) until the queue has room; callers whose calls
        would add to a full queue call this first."""
        if not self.full:
            return
        if self._room is None:
            self._room = asyncio.Event()
        if self._wake is not None:
            self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.full_wait
        # Room comes from this writer handing a batch over (the event) or from the sink
        # storing one (looked at every 50 ms).
        while self.full and (left := deadline - loop.time()) > 0:
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), min(left, 0.05))
        timed_out = self.full
        if timed_out:
            log.warning("audit queue full for %ss; going on (row kept)", self.full_wait)
        if self.metrics is not None:
            self.metrics.audit_waited(timed_out)

    @property
    def pending(self) -> int:
        return len(self._queue)

    # --- writing ------------------------------------------------------------------------
    async def run(self) -> None:
        """Hand batches to the sink until cancelled (shutdown then calls :meth:`flush`)."""
        self._wake = asyncio.Event()
        try:
            await self.sink.start()
        except Exception:  # rows keep queueing; the sink says what went wrong
            log.exception("the audit sink did not start")
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                while self._queue:
                    await self._write_next()
                    if len(self._queue) < self.batch_size:
                        break
            except Exception:  # never let the writer die: rows keep queueing behind it
                log.exception("the audit writer hit an unexpected error; going on")

    async def flush(self) -> None:
        """Hand over everything queued and wait until the sink has stored it."""
        while self._queue:
            await self._write_next()
        await self.sink.drain()

    async def close(self) -> None:
        """Flush, then stop the sink (shutdown)."""
        await self.flush()
        await self.sink.close()

    async def _write_next(self) -> None:
        async with self._lock:
            queue = self._queue
            entries = [queue.popleft() for _ in range(min(self.batch_size, len(queue)))]
            if not entries:
                return
            wires, masks = self._wired(entries)
            # Shielded: cancelling the writer (shutdown) must not drop a batch half handed
            # over; flush() hands over the rest.
            await asyncio.shield(self.sink.deliver(wires, masks))
            if self._room is not None and not self.full:
                self._room.set()

    def _wired(self, queued: list[Wire]) -> tuple[list[Wire], list[tuple[str, ...]]]:
        """The batch with each row's SecretMask replaced by the index of its values."""
        masks: list[tuple[str, ...]] = []
        index: dict[int, int] = {}
        wires = [
            wire if wire[-1] is None else (*wire[:-1], self._mask(wire[-1], masks, index))
            for wire in queued
        ]
        return wires, masks

    @staticmethod
    def _mask(
        mask: SecretMask | None, masks: list[tuple[str, ...]], index: dict[int, int]
    ) -> int | None:
        if not mask:
            return None
        at = index.get(id(mask))
        if at is None:
            at = index[id(mask)] = len(masks)
            masks.append(mask.values)
        return at
