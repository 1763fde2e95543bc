"""The `subscriptions/listen` stream of a backend session spoken to in 2026-07-28.

2025-11-25 servers push list changes and resource updates on their session; a
2026-07-28 server sends them only on a listen stream whose filter names what the
client wants. One stream per backend session carries both: the three list-change
kinds, and the resources agents subscribed to (the set changes as agents come and
go, and the stream is reopened with the new filter — the spec has no way to amend
one). A server that does not acknowledge the stream within the connect timeout is
taken to have none, rather than holding the session's reader (an SDK backend that
answers listen with plain JSON never acknowledges it).
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


class ListenStream:
    """List changes and subscribed resource updates of one backend, as callbacks."""

    def __init__(
        self,
        server: str,
        on_list_changed: Callable[[], None],
        on_resource_updated: Callable[[str], None],
    ) -> None:
        """``on_*`` are called on the stream's task: they must not block (spawn work)."""
        self.server = server
        self.ack_timeout = 10.0  # set by run()
        self.on_list_changed = on_list_changed
        self.on_resource_updated = on_resource_updated
        self.uris: set[str] = set()
        self._changed = asyncio.Event()

    def subscribe(self, uri: str, on: bool) -> None:
        """Add or drop ``uri``; the stream is reopened with the new filter."""
        before = len(self.uris)
        if on:
            self.uris.add(uri)
        else:
            self.uris.discard(uri)
        if len(self.uris) != before:
            self._changed.set()

    async def run(self, client: Client, ack_timeout: float) -> None:
        """Serve the stream for as long as the session lives (a task of the session);
        a server that has not acknowledged it within ``ack_timeout`` s has none."""
        self.ack_timeout = ack_timeout
        if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return  # 2025-11-25 servers push on the session (McpConnection._on_message)
        pause = _FIRST_RETRY
        while True:
            self._changed.clear()
            try:
                await self._one_stream(client, sorted(self.uris))
                pause = _FIRST_RETRY  # it was up: a drop is retried soon
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("no listen stream", extra={"server": self.server, "error": str(exc)})
                pause = min(pause * 2, _LAST_RETRY)
            # Reopen when the filter changes, else after a pause (it dropped, or the
            # server has no listen: one refused request per pause is cheap).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._changed.wait()

    async def _one_stream(self, client: Client, uris: list[str]) -> None:
        async with AsyncExitStack() as stack:
            async with asyncio.timeout(self.ack_timeout):
                subscription = await stack.enter_async_context(
                    client.listen(
                        tools_list_changed=True,
                        prompts_list_changed=True,
                        resources_list_changed=True,
                        resource_subscriptions=uris,
                    )
                )
            reader = asyncio.ensure_future(self._read(subscription))
            changed = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait({reader, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (reader, changed):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                raise reader.exception()  # type: ignore[misc]

    async def _read(self, subscription: Any) -> None:
        async for event in subscription:
            if isinstance(event, ResourceUpdated):
                self.on_resource_updated(event.uri)
            else:
                self.on_list_changed()
