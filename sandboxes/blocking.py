"""The sandboxes pillar's own threads for blocking calls: bounded, fair and time-limited.

Workspace files live on the gateway's host (``local``) and sandboxed code decides
what is in them, so a file operation may block for long (a huge tree to measure,
a hung filesystem). Such calls never run on the process's default executor,
which skills and the rest of the gateway share (six threads on two cores):

* a fixed number of worker threads, started on demand;
* at most ``per_key`` calls of one key (a sandbox) run at once, and waiting keys
  are served in turn, so one sandbox cannot take every thread;
* each call has a deadline: past it the caller gets :class:`FsTimeout` (HTTP 504)
  and, if the call is still running, its thread counts as stuck and a spare one
  replaces it (at most ``spare`` spares, so the threads stay bounded too);
* the threads are daemon threads: a call that never returns cannot keep the
  process from exiting (``ThreadPoolExecutor`` joins its workers at exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, TypeVar

from sandboxes.providers.base import ProviderError

T = TypeVar("T")


class FsTimeout(ProviderError):
    """A blocking call of the sandboxes pillar did not finish in time."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="sandbox_fs_timeout")


@dataclass(eq=False)
class _Job:
    fn: Callable[[], Any]
    key: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    state: Literal["queued", "running", "done"] = "queued"
    stuck: bool = field(default=False)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the caller gave up (timeout or cancellation)
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class BlockingPool:
    """Runs blocking callables on daemon threads; see the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        workers: int = 8,
        timeout: float | None = 30.0,
        per_key: int | None = None,
        spare: int | None = None,
    ) -> None:
        self.name = name
        self.workers = max(1, workers)
        self.timeout = timeout
        self.per_key = per_key or max(1, self.workers // 4)
        self.spare = self.workers * 4 if spare is None else spare
        self._cond = threading.Condition()
        self._queues: dict[str, deque[_Job]] = {}  # only non-empty ones; order = turn
        self._active: dict[str, int] = {}
        self._threads = 0
        self._idle = 0
        self._queued = 0
        self._stuck = 0
        self._started = 0

    def stats(self) -> dict[str, int]:
        """Threads (all, idle, stuck) and queued calls, for tests and diagnostics."""
        with self._cond:
            return {
                "threads": self._threads,
                "idle": self._idle,
                "stuck": self._stuck,
                "queued": self._queued,
            }

    async def run(
        self,
        fn: Callable[[], T],
        *,
        key: str = "",
        what: str = "a workspace file operation",
        timeout: float | Literal["default"] | None = "default",
    ) -> T:
        """``fn()`` on a pool thread; :class:`FsTimeout` past the deadline (waiting
        for a thread counts). Cancelling the caller drops a call not yet started."""
        limit = self.timeout if timeout == "default" else timeout
        loop = asyncio.get_running_loop()
        job = _Job(fn, key, loop, loop.create_future())
        with self._cond:
            self._queues.setdefault(key, deque()).append(job)
            self._queued += 1
            self._grow()
            self._cond.notify()
        try:
            result: T = await asyncio.wait_for(job.future, limit)
            return result
        except TimeoutError:
            self._abandon(job, stuck=True)
            raise FsTimeout(
                f"{what} took longer than {limit:g} s and was abandoned; try again later"
            ) from None
        except asyncio.CancelledError:
            self._abandon(job, stuck=False)
            raise

    # --- thread side (everything below holds or takes self._cond) ----------------------------
    def _grow(self) -> None:
        live = self._threads - self._stuck
        while (
            self._queued > self._idle
            and live < self.workers
            and self._threads < self.workers + self.spare
        ):
            self._started += 1
            thread = threading.Thread(
                target=self._work, name=f"{self.name}-{self._started}", daemon=True
            )
            self._threads += 1
            self._idle += 1  # counted idle until it takes its first job
            live += 1
            thread.start()

    def _abandon(self, job: _Job, *, stuck: bool) -> None:
        with self._cond:
            if job.state == "queued":
                queue = self._queues.get(job.key)
                if queue is not None:
                    with contextlib.suppress(ValueError):
                        queue.remove(job)
                        self._queued -= 1
                    if not queue:
                        del self._queues[job.key]
            elif job.state == "running" and stuck and not job.stuck:
                job.stuck = True
                self._stuck += 1
                self._grow()  # a spare takes the stuck thread's place

    def _take(self) -> _Job | None:
        for key, queue in list(self._queues.items()):
            if self._active.get(key, 0) >= self.per_key:
                continue
            job = queue.popleft()
            del self._queues[key]
            if queue:  # back of the line: the other keys go first next time
                self._queues[key] = queue
            self._queued -= 1
            self._active[key] = self._active.get(key, 0) + 1
            job.state = "running"
            return job
        return None

    def _work(self) -> None:
        with self._cond:
            self._idle -= 1
        while True:
            with self._cond:
                while True:
                    if self._threads - self._stuck > self.workers:  # a stuck call came back
                        self._threads -= 1
                        return
                    job = self._take()
                    if job is not None:
                        break
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
            try:
                value, ok = job.fn(), True
            except BaseException as exc:  # handed to the caller, never lost in the thread
                value, ok = exc, False
            with self._cond:
                job.state = "done"
                left = self._active[job.key] - 1
                if left:
                    self._active[job.key] = left
                else:
                    del self._active[job.key]
                if job.stuck:
                    self._stuck -= 1
                self._cond.notify_all()  # a slot of job.key is free again
            with contextlib.suppress(RuntimeError):  # the caller's loop is closed
                job.loop.call_soon_threadsafe(_settle, job.future, ok, value)
            del job, value


# Short blocking calls of the providers' SDKs (Docker, Kubernetes) and lifecycle steps:
# the pillar's shared pool, so that they never occupy the default executor either.
# Their own client timeouts bound them; no per-call deadline here.
IO = BlockingPool("sandbox-io", workers=16, timeout=None, per_key=16)


async def to_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """:func:`asyncio.to_thread` on the sandboxes' own threads (:data:`IO`)."""
    return await IO.run(partial(fn, *args, **kwargs), what="a sandbox runtime call", timeout=None)


def in_thread(fn: Callable[[], None], *, name: str) -> asyncio.Future[None]:
    """Run ``fn`` on a daemon thread of its own, for calls that last as long as a
    command runs (an exec's output stream): a pool thread would be held that long."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def run() -> None:
        try:
            fn()
            ok, value = True, None
        except BaseException as exc:  # handed to the awaiting side
            ok, value = False, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(_settle, future, ok, value)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
