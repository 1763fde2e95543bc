"""The messages of a direct call's SSE response, resumed when the stream drops.

A backend that gives its events ids (the MCP SDKs do, with an event store) may end a
call's response stream before the answer — on purpose (to make the client poll), or
because a proxy or the network cut it — and expects the client to GET the endpoint
with ``Last-Event-ID`` and read the rest. The SDK client does so; the fast path must
too, or it fails calls the SDK path would answer. The rules are the SDK client's:
wait ``retry`` milliseconds (1 s unless the stream said), give up after two
failed attempts in a row. A stream without ids cannot be resumed: it fails as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from gateway.servers.runtimes.direct import DirectRoute
from gateway.servers.runtimes.http_channel import ChannelError, Response

# The SDK client's values (mcp.client.streamable_http).
DEFAULT_RECONNECTION_DELAY_MS = 1000
MAX_RECONNECTION_ATTEMPTS = 2


@dataclass
class _State:
    last_event_id: bytes = b""
    retry_ms: int | None = None
    error: ChannelError | None = None  # how the last stream ended, if it broke
    delivered: bool = False  # whether the last stream carried a message


async def backend_messages(route: DirectRoute, response: Response) -> AsyncGenerator[bytes]:
    """The JSON-RPC messages of ``response`` (an SSE stream), then of its resumptions.

    Yields what an MCP client acts on (``message`` events with data); the caller stops
    reading once it has its answer. Ends when a stream ends and cannot be resumed;
    raises the :class:`ChannelError` of a broken stream that could not be resumed.
    Use it under :func:`contextlib.aclosing` (a resumption holds a connection).
    """
    state = _State()
    async for data in _read(response, state):
        yield data
    failures = 0
    while state.last_event_id and failures < MAX_RECONNECTION_ATTEMPTS:
        delay = state.retry_ms if state.retry_ms is not None else DEFAULT_RECONNECTION_DELAY_MS
        await asyncio.sleep(delay / 1000)
        state.delivered = False
        try:
            async with route.channel.get(resume_headers(route, state.last_event_id)) as again:
                if again.status != 200 or again.content_type != b"text/event-stream":
                    await again.read()
                    state.error = ChannelError(
                        f"resuming the stream: HTTP {again.status}", sent=True
                    )
                    failures += 1
                    continue
                state.error = None
                async for data in _read(again, state):
                    yield data
        except ChannelError as exc:  # no connection for the GET
            state.error = exc
        # A stream that brought something may be followed by another (the SDK resets
        # its count then too); one that brought nothing counts as a failure.
        failures = 0 if state.delivered else failures + 1
    if state.error is not None:
        raise state.error


async def _read(response: Response, state: _State) -> AsyncIterator[bytes]:
    try:
        async for event in response.events():
            if event.is_message:
                state.delivered = True
                yield event.data
    except ChannelError as exc:  # the backend dropped the connection mid-stream
        state.error = exc
    decoder = response.sse
    if decoder is not None:
        if decoder.last_event_id:  # a stream that sets none keeps the one we had
            state.last_event_id = decoder.last_event_id
        if decoder.retry is not None:
            state.retry_ms = decoder.retry


def resume_headers(route: DirectRoute, last_event_id: bytes) -> dict[str, str]:
    """The GET's headers: the session's, and the id as the backend sent it."""
    headers = {
        "MCP-Protocol-Version": route.protocol_version,
        # latin-1 maps bytes to code points one to one: the header carries them back as sent.
        "Last-Event-ID": last_event_id.decode("latin-1"),
    }
    if route.target.session_id and not route.modern:
        headers["Mcp-Session-Id"] = route.target.session_id
    return headers
