"""The `subscriptions/listen` stream of a backend session spoken to in 2026-07-28.

2025-11-25 servers push list changes and resource updates on their session; a
2026-07-28 server sends them only on a listen stream whose filter names what the
client wants. One stream per backend session carries both: the three list-change
kinds, and the resources agents subscribed to (the set changes as agents come and
go, and the stream is reopened with the new filter — the spec has no way to amend
one; the new stream opens before the old one closes, so a list change sent meanwhile
is not lost). A server that does not acknowledge the stream within the connect
timeout is taken to have none, rather than holding the session's reader (an SDK
backend that answers listen with plain JSON never acknowledges it).

Adding a resource returns once a stream whose filter names it is acknowledged (or
the server refused one): an agent told "subscribed" may change the resource at
once, and an update sent on the stream of the old filter would be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from mcp import Client
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

log = logging.getLogger("gateway.servers")

_FIRST_RETRY = 5.0  # seconds
_LAST_RETRY = 300.0
_SUBSCRIBE_WAIT = 10.0  # at most this long for the new filter's stream (then it comes later)


class ListenStream:
    """List changes and subscribed resource updates of one backend, as callbacks."""

    def __init__(
        self,
        server: str,
        on_list_changed: Callable[[], None],
        on_resource_updated: Callable[[str], None],
        on_gap: Callable[[], None] = lambda: None,
    ) -> None:
        """``on_*`` are called on the stream's task: they must not block (spawn work).
        ``on_gap``: a stream is up after a time without one (the session's first, or
        after one was lost), so what the server announced meanwhile was missed: the
        lists are to be fetched again."""
        self.server = server
        self.ack_timeout = 10.0  # set by run()
        self.on_list_changed = on_list_changed
        self.on_resource_updated = on_resource_updated
        self.on_gap = on_gap
        self.uris: set[str] = set()
        self._changed = asyncio.Event()
        self.version = 0  # counts the filter's changes
        self._settled = -1  # the filter version of the last stream opened or refused
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    async def subscribe(self, uri: str, on: bool) -> None:
        """Add or drop ``uri``; the stream is reopened with the new filter. Adding
        returns once that stream is acknowledged (or refused), within a bound."""
        before = len(self.uris)
        if on:
            self.uris.add(uri)
        else:
            self.uris.discard(uri)
        if len(self.uris) == before:
            return
        self.version += 1
        self._changed.set()
        if on:
            await self._settled_at(self.version)

    async def _settled_at(self, version: int) -> None:
        if self._settled >= version:
            return
        waiter = asyncio.get_running_loop().create_future()
        entry = (version, waiter)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(min(self.ack_timeout, _SUBSCRIBE_WAIT)):
                await waiter
        except TimeoutError:
            log.info("listen stream not renewed in time", extra={"server": self.server})
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    def _settle(self, version: int) -> None:
        """A stream with the filter of ``version`` was acknowledged or refused."""
        self._settled = max(self._settled, version)
        for target, waiter in self._waiters:
            if target <= self._settled and not waiter.done():
                waiter.set_result(None)

    async def run(self, client: Client, ack_timeout: float) -> None:
        """Serve the stream for as long as the session lives (a task of the session);
        a server that has not acknowledged it within ``ack_timeout`` s has none."""
        self.ack_timeout = ack_timeout
        if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return  # 2025-11-25 servers push on the session (McpConnection._on_message)
        pause = _FIRST_RETRY
        current: _Stream | None = None
        try:
            while True:
                self._changed.clear()
                version = self.version
                try:
                    fresh = await self._open(client, sorted(self.uris))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("no listen stream", extra={"server": self.server, "error": str(exc)})
                    self._settle(version)  # refused: nobody waits for it any longer
                    pause = min(pause * 2, _LAST_RETRY)
                    # The old filter's stream (if any) serves on; retry after a pause (the
                    # server may have no listen: one refused request per pause is cheap).
                    if current is None or await self._serve(current, pause):
                        await self._drop(current)
                        current = None
                        await self._pause(pause)
                    continue
                self._settle(version)
                if current is None:
                    self.on_gap()
                # Make before break: the old stream closes once the new one is
                # acknowledged, so no moment goes without one (an event then may come
                # twice; agents re-list or re-read, nothing is lost).
                await self._drop(current)
                current = fresh
                if await self._serve(current):  # it ended: reopen soon (or on a change)
                    failed = current.failed()
                    await self._drop(current)
                    current = None
                    pause = min(pause * 2, _LAST_RETRY) if failed else _FIRST_RETRY
                    await self._pause(pause)
                else:
                    pause = _FIRST_RETRY
        finally:
            await self._drop(current)

    async def _open(self, client: Client, uris: list[str]) -> _Stream:
        stack = AsyncExitStack()
        try:
            async with asyncio.timeout(self.ack_timeout):
                subscription = await stack.enter_async_context(
                    client.listen(
                        tools_list_changed=True,
                        prompts_list_changed=True,
                        resources_list_changed=True,
                        resource_subscriptions=uris,
                    )
                )
        except BaseException:
            await stack.aclose()
            raise
        return _Stream(stack, asyncio.ensure_future(self._read(subscription)))

    async def _serve(self, stream: _Stream, timeout: float | None = None) -> bool:
        """Until the filter changes (False) or the stream ends (True); False after
        ``timeout`` seconds too."""
        changed: asyncio.Future[Any] = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait(
                {stream.reader, changed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            changed.cancel()
        return stream.reader.done()

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the filter changes."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._changed.wait()

    @staticmethod
    async def _drop(stream: _Stream | None) -> None:
        if stream is not None:
            await stream.close()

    async def _read(self, subscription: Any) -> None:
        async for event in subscription:
            if isinstance(event, ResourceUpdated):
                self.on_resource_updated(event.uri)
            else:
                self.on_list_changed()


class _Stream:
    """One acknowledged listen stream and the task reading it."""

    def __init__(self, stack: AsyncExitStack, reader: asyncio.Future[Any]) -> None:
        self.stack = stack
        self.reader = reader

    def failed(self) -> bool:
        """Did reading it fail (rather than the server ending it)?"""
        reader = self.reader
        if not reader.done() or reader.cancelled():
            return False
        error = reader.exception()
        if error is not None:
            log.debug("listen stream lost", extra={"error": str(error)})
        return error is not None

    async def close(self) -> None:
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader
        with contextlib.suppress(Exception):
            await self.stack.aclose()
