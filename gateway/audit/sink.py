"""Where the audit writer's batches are stored: in this process, or in the audit writer
process that a serving gateway starts beside itself.

Why a process: under load, forming, masking and hashing a row and SQLite's insert cost
this process's interpreter ~25 µs a call (a quarter of a proxied call). In a process of
their own they run on another core and the gateway only reads out the few things it
alone has (rows.to_wire) and writes the batch to a pipe.

The writer process (child.py) gets length-prefixed JSON frames on its stdin — a
``config`` frame, then numbered ``batch`` frames and ``flush`` markers — and answers
one JSON line per event on its stdout: ``ready`` (its stream), ``ack`` (batch n is
stored or spilled), ``flushed`` (everything before marker n is), ``m`` (a metric).
The gateway keeps each batch until it is acknowledged: if the process dies, a new one
is started and is sent every unacknowledged batch again (rows it finds already stored
are skipped, so none is doubled and the new chain has no gap); after three deaths in a
minute, or if none can start, the gateway stores its rows itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from gateway.audit.forming import Wire
from gateway.audit.frames import FRAME
from gateway.audit.store import AuditStore, StoreMetrics
from gateway.db import Database

log = logging.getLogger("gateway.audit")

DEATHS_BEFORE_INLINE = 3  # within DEATH_WINDOW seconds
DEATH_WINDOW = 60.0
DRAIN_TIMEOUT = 120.0  # longest a flush waits for the process (its retries take ~6 s)
EXIT_TIMEOUT = 30.0


class InlineSink:
    """Batches stored by a store in this process (CLI, workers, tests, the fallback)."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store
        self._storing: set[asyncio.Future[bool]] = set()

    @property
    def stream(self) -> str:
        return self.store.stream

    @property
    def in_flight(self) -> int:
        return 0  # deliver() returns once the batch is stored

    async def start(self) -> None:
        try:
            await self.store.reingest()
        except Exception:  # the spill stays for the next try
            log.exception("could not read back spilled audit rows")

    async def deliver(
        self, wires: list[Wire], masks: list[tuple[str, ...]], *, resend: bool = False
    ) -> None:
        # In a task of its own: cancelling the writer (shutdown) must not drop rows that
        # already have their place in the chain; drain() waits for it.
        task = asyncio.ensure_future(self.store.put(wires, masks, resend=resend))
        self._storing.add(task)
        task.add_done_callback(self._storing.discard)
        await asyncio.shield(task)

    async def drain(self) -> None:
        while self._storing:
            await asyncio.gather(*self._storing, return_exceptions=True)
        if self.store.held:
            await self.store.retry_held()
            if self.store.held:
                log.critical("%d audit rows could be neither written nor spilled", self.store.held)

    async def close(self) -> None:
        await self.drain()


class ChildDied(Exception):
    """The writer process ended while a flush waited for it."""


def _jsonable(value: Any) -> Any:
    """Frames carry what rows.to_wire left: plain JSON, and rarely a model or a set in an
    admin change's detail (the same values the store would have made of them)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, set | frozenset):
        return list(value)
    return str(value)


class ProcessSink:
    """Batches stored by the audit writer process (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        spill_dir: Path,
        *,
        retries: int = 5,
        batch_size: int = 500,
        interval: float = 0.5,
        log_level: str = "INFO",
        log_format: str = "json",
        metrics: StoreMetrics | None = None,
        command: tuple[str, ...] = (sys.executable, "-m", "gateway.audit.child"),
    ) -> None:
        self.db = db
        self.spill_dir = spill_dir
        self.metrics = metrics
        self.command = command
        self._config = {
            "t": "config",
            "database_url": db.url,
            "spill_dir": str(spill_dir),
            "retries": retries,
            "batch_size": batch_size,
            "interval": interval,
            "log_level": log_level,
            "log_format": log_format,
        }
        self._store_options = {"retries": retries, "reingest_batch": batch_size}
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._unacked: dict[int, tuple[list[Wire], list[tuple[str, ...]]]] = {}
        self._in_flight = 0
        self._next = 0
        self._marker = 0
        self._waiters: dict[int, asyncio.Future[int]] = {}
        self._deaths: deque[float] = deque(maxlen=DEATHS_BEFORE_INLINE)
        self._inline: InlineSink | None = None
        self._closing = False
        self._started = False
        self._stream = "starting"
        self.restarts = 0

    @property
    def stream(self) -> str:
        return self._inline.stream if self._inline is not None else self._stream

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def pid(self) -> int | None:
        """The writer process's id (None when the gateway stores its rows itself)."""
        return self._proc.pid if self._proc is not None and self._inline is None else None

    @property
    def inline(self) -> bool:
        """Whether the gateway has fallen back to storing its rows itself."""
        return self._inline is not None

    async def start(self) -> None:
        async with self._send_lock:
            if not self._started:
                self._started = True
                await self._spawn()

    async def deliver(self, wires: list[Wire], masks: list[tuple[str, ...]]) -> None:
        if self._inline is not None:
            await self._inline.deliver(wires, masks)
            return
        n = self._next = self._next + 1
        self._unacked[n] = (wires, masks)
        self._in_flight += len(wires)
        async with self._send_lock:
            await self._send_batch(n, resend=False)

    async def drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._inline is None and (self._unacked or self._proc is None):
            if not self._started:  # the writer task did not run yet
                await self.start()
                continue
            if self._proc is None:  # being started again after a death
                await asyncio.sleep(0.05)
                continue
            self._marker += 1
            waiter = self._waiters[self._marker] = loop.create_future()
            async with self._send_lock:
                await self._send({"t": "flush", "n": self._marker})
            try:
                held = await asyncio.wait_for(waiter, DRAIN_TIMEOUT)
            except ChildDied:
                continue  # a new process has every unacknowledged batch again
            except TimeoutError:
                log.critical("the audit writer process did not flush in %ss", DRAIN_TIMEOUT)
                await self._go_inline("it did not flush in time")
                break
            finally:
                self._waiters.pop(self._marker, None)
            if held:
                log.critical("%d audit rows could be neither written nor spilled", held)
            break
        if self._inline is not None:
            await self._inline.drain()

    async def close(self) -> None:
        await self.drain()
        self._closing = True
        proc = self._proc
        if proc is not None and self._inline is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), EXIT_TIMEOUT)
            except TimeoutError:
                log.error("the audit writer process did not exit; killing it")
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._unacked:  # the process ended holding rows: store them here
            await self._go_inline("it ended holding rows")
            assert self._inline is not None
            await self._inline.drain()

    # --- the process --------------------------------------------------------------------
    async def _spawn(self) -> None:
        """Start a writer process and send it every unacknowledged batch (under the lock)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 20,
            )
        except OSError as exc:
            log.critical("could not start the audit writer process: %s", exc)
            await self._go_inline("it could not start")
            return
        self._proc = proc
        self._reader = asyncio.create_task(self._read(proc), name="audit-writer-process")
        await self._send(self._config)
        for n in sorted(self._unacked):
            await self._send_batch(n, resend=True)

    async def _send_batch(self, n: int, *, resend: bool) -> None:
        wires, masks = self._unacked[n]
        await self._send({"t": "batch", "n": n, "rows": wires, "masks": masks, "resend": resend})

    async def _send(self, message: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            return  # the reader restarts it and sends every unacknowledged batch again
        payload = orjson.dumps(message, default=_jsonable, option=orjson.OPT_NON_STR_KEYS)
        try:
            proc.stdin.write(FRAME.pack(len(payload)) + payload)
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # likewise

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        handle = self._handle
        while line := await proc.stdout.readline():
            try:
                handle(orjson.loads(line))
            except (orjson.JSONDecodeError, KeyError, TypeError):
                log.error("the audit writer process said something odd: %r", line[:200])
        code = await proc.wait()
        if self._closing or self._inline is not None:
            return
        log.error("the audit writer process ended (exit code %s); starting another", code)
        self._deaths.append(time.monotonic())
        async with self._send_lock:
            if self._proc is not proc:
                return
            self._proc = None
            if (
                len(self._deaths) == DEATHS_BEFORE_INLINE
                and self._deaths[-1] - self._deaths[0] < DEATH_WINDOW
            ):
                await self._go_inline(f"it died {DEATHS_BEFORE_INLINE} times")
                return
            self.restarts += 1
            await self._spawn()
        # Flushes waiting on the dead process send their marker to the new one.
        self._fail_waiters()

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == "ack":
            for n in message["n"]:
                batch = self._unacked.pop(n, None)
                if batch is not None:
                    self._in_flight -= len(batch[0])
        elif kind == "flushed":
            waiter = self._waiters.get(message["n"])
            if waiter is not None and not waiter.done():
                waiter.set_result(message["held"])
        elif kind == "m":
            if self.metrics is not None:
                _METRICS[message["k"]](self.metrics, message)
        elif kind == "ready":
            self._stream = message["stream"]

    def _fail_waiters(self) -> None:
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(ChildDied())

    async def _go_inline(self, why: str) -> None:
        """Store rows in this process from now on; hand it every unacknowledged batch."""
        if self._inline is None:
            log.critical("the audit writer process is given up (%s): storing rows here", why)
            proc, self._proc = self._proc, None
            if proc is not None and proc.returncode is None:
                proc.kill()
            store = AuditStore(self.db, self.spill_dir, metrics=self.metrics, **self._store_options)
            self._inline = InlineSink(store)
            await self._inline.start()
        for n in sorted(self._unacked):
            wires, masks = self._unacked.pop(n)
            self._in_flight -= len(wires)
            await self._inline.deliver(wires, masks, resend=True)
        self._fail_waiters()


_METRICS: dict[str, Callable[[StoreMetrics, dict[str, Any]], None]] = {
    "batch": lambda m, msg: m.audit_batch(msg["rows"], msg["s"]),
    "rows": lambda m, msg: m.audit_rows(msg["result"], msg["rows"]),
    "failed": lambda m, msg: m.audit_write_failed(),
}
