"""The fast path's HTTP client against real sockets: bodies, SSE framing, pooling, faults."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import aclosing

import pytest

from gateway.observability.masking import SecretMask
from gateway.servers.runtimes.base import Health
from gateway.servers.runtimes.direct import DirectRoute
from gateway.servers.runtimes.direct_stream import backend_messages
from gateway.servers.runtimes.http_channel import ChannelError, HttpChannel
from gateway.servers.runtimes.limiter import Limiter
from gateway.servers.runtimes.remote import StreamableHttpTarget

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.Server, str, list[int]]:
    connections: list[int] = []

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await handler(reader, writer)

    server = await asyncio.start_server(counted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/mcp", connections


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head + await reader.readexactly(length)


async def test_json_bodies_reuse_one_connection() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                request = await _read_request(reader)
            except asyncio.IncompleteReadError:
                return
            seen.append(request)
            body = request.split(b"\r\n\r\n", 1)[1]
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            await writer.drain()

    server, url, connections = await _serve(handler)
    channel = HttpChannel(url, {"X-Custom": "yes"})
    for n in range(3):
        async with channel.post(b'{"n": %d}' % n, {"Mcp-Session-Id": "abc"}) as response:
            assert response.status == 200 and response.content_type == b"application/json"
            assert await response.read() == b'{"n": %d}' % n
    assert len(connections) == 1  # keep-alive
    assert b"X-Custom: yes" in seen[0] and b"Mcp-Session-Id: abc" in seen[0]
    assert seen[0].startswith(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:")
    await channel.close()
    server.close()


async def test_sse_events_split_across_chunks_are_reassembled() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        stream = b': comment\r\n\r\nevent: message\r\ndata: {"a":\r\ndata: 1}\r\n\r\nid: 7\ndata: {"b":2}\n\n'
        for i in range(0, len(stream), 5):  # five bytes per chunk, one write each
            piece = stream[i : i + 5]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server, url, _ = await _serve(handler)
    channel = HttpChannel(url, {})
    async with channel.post(b"{}") as response:
        assert response.content_type == b"text/event-stream"
        events = [event.data async for event in response.events()]
        assert response.sse is not None and response.sse.last_event_id == b"7"
    assert events == [b'{"a":\n1}', b'{"b":2}']
    await channel.close()
    server.close()


def _sse_handler(tail_delay: float, tail: bytes = b"") -> Handler:
    """Answers each POST with an SSE stream as the SDKs do: the answer event first, the
    end of the stream (after ``tail``) ``tail_delay`` seconds later."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await _read_request(reader)
            except asyncio.IncompleteReadError:
                return
            event = b'event: message\ndata: {"ok":1}\n\n'
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(event), event)
            )
            await writer.drain()
            await asyncio.sleep(tail_delay)
            if tail:
                writer.write(b"%x\r\n%s\r\n" % (len(tail), tail))
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    return handler


async def _first_event(channel: HttpChannel) -> bytes:
    async with channel.post(b"{}") as response:
        async for event in response.events():
            return event.data  # stop reading: the rest of the stream is not wanted
    raise AssertionError("no event")


@pytest.mark.parametrize("tail", [b"", b": keep-alive\n\n"])
async def test_a_stream_left_after_its_answer_is_drained_and_reused(tail: bytes) -> None:
    server, url, connections = await _serve(_sse_handler(0.05, tail))
    channel = HttpChannel(url, {})
    for _ in range(3):
        assert await _first_event(channel) == b'{"ok":1}'
        await asyncio.sleep(0.1)  # the end of the stream arrives meanwhile
    assert len(connections) == 1  # not one connection per call
    await channel.close()
    server.close()


async def test_a_stream_that_does_not_end_is_closed_not_reused() -> None:
    import gateway.servers.runtimes.http_channel as http_channel

    server, url, connections = await _serve(_sse_handler(30))
    channel = HttpChannel(url, {})
    saved, http_channel._DRAIN_SECONDS = http_channel._DRAIN_SECONDS, 0.05
    try:
        assert await _first_event(channel) == b'{"ok":1}'
        assert await _first_event(channel) == b'{"ok":1}'  # at once: not after the first's end
    finally:
        http_channel._DRAIN_SECONDS = saved
    assert len(connections) == 2
    await channel.close()
    server.close()


async def test_a_connection_the_server_closes_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server, url, connections = await _serve(handler)
    channel = HttpChannel(url, {})
    for _ in range(2):
        async with channel.post(b"{}") as response:
            assert await response.read() == b"{}"
    assert len(connections) == 2
    await channel.close()
    server.close()


async def test_a_response_cut_short_is_an_error_that_was_sent() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial')
        await writer.drain()
        writer.close()

    server, url, _ = await _serve(handler)
    channel = HttpChannel(url, {})
    with pytest.raises(ChannelError) as caught:
        async with channel.post(b"{}") as response:
            await response.read()
    assert caught.value.sent is True
    await channel.close()
    server.close()


async def test_refused_connection_is_an_error_that_was_not_sent() -> None:
    server, url, _ = await _serve(lambda r, w: asyncio.sleep(0))
    server.close()
    await server.wait_closed()
    channel = HttpChannel(url, {}, connect_timeout=2)
    with pytest.raises(ChannelError) as caught:
        async with channel.post(b"{}"):
            pass
    assert caught.value.sent is False


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="not an http"):
        HttpChannel("ftp://example.com/", {})


# --- a call's SSE stream as the fast path reads it (gateway.servers.runtimes.direct_stream)


def _route(url: str) -> DirectRoute:
    target = StreamableHttpTarget(url, {})
    target.session_id = "sess-1"
    route = DirectRoute.build("fix", target, "2025-11-25", SecretMask(), Limiter(4), Health())
    assert route is not None
    return route


def _sse_head() -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _messages(route: DirectRoute) -> list[bytes]:
    """Read as the fast path does: up to the answer (here: a message with a result)."""
    seen: list[bytes] = []
    async with (
        route.channel.post(b"{}") as response,
        aclosing(backend_messages(route, response)) as messages,
    ):
        async for data in messages:
            seen.append(data)
            if b'"result"' in data:
                break
    return seen


async def test_priming_and_non_message_events_are_skipped() -> None:
    """What SDK servers send: a priming event (an id, empty data) before the answer."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_sse_head())
        writer.write(_chunk(b"id: s_0\r\nretry: 100\r\ndata: \r\n\r\n"))
        writer.write(_chunk(b"event: ping\ndata: {}\n\n: keep-alive\n\n"))
        writer.write(_chunk(b'event: message\rid: s_1\rdata: {"result":1}\r\r'))
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server, url, _ = await _serve(handler)
    route = _route(url)
    assert await _messages(route) == [b'{"result":1}']
    await route.channel.close()
    server.close()


async def test_a_dropped_stream_is_resumed_with_last_event_id() -> None:
    """The backend cuts the POST's stream after an id; the rest comes on a GET."""
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        requests.append(head)
        writer.write(_sse_head())
        if head.startswith(b"POST"):
            await reader.readexactly(2)
            writer.write(_chunk(b'id: s_0\nretry: 10\ndata: \n\nid: s_1\ndata: {"n":1}\n\n'))
            await writer.drain()
            writer.close()  # dropped mid-call: no terminating chunk
            return
        writer.write(_chunk(b'id: s_2\ndata: {"result":2}\n\n'))
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server, url, _ = await _serve(handler)
    route = _route(url)
    assert await _messages(route) == [b'{"n":1}', b'{"result":2}']
    get = requests[1].decode().lower()
    assert get.startswith("get /mcp http/1.1")
    assert "last-event-id: s_1" in get
    assert "mcp-session-id: sess-1" in get
    assert "mcp-protocol-version: 2025-11-25" in get
    await route.channel.close()
    server.close()


async def test_a_dropped_stream_without_ids_fails_as_sent() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_sse_head() + _chunk(b'data: {"n":1}\n\n'))
        await writer.drain()
        writer.close()

    server, url, _ = await _serve(handler)
    route = _route(url)
    with pytest.raises(ChannelError) as caught:
        await _messages(route)
    assert caught.value.sent is True
    await route.channel.close()
    server.close()


async def test_resumption_gives_up_after_two_failed_attempts() -> None:
    gets = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal gets
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"GET"):
            gets += 1
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        await reader.readexactly(2)
        writer.write(_sse_head() + _chunk(b"id: s_0\nretry: 1\ndata: \n\n"))
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server, url, _ = await _serve(handler)
    route = _route(url)
    with pytest.raises(ChannelError, match="HTTP 405"):
        await _messages(route)
    assert gets == 2
    await route.channel.close()
    server.close()
