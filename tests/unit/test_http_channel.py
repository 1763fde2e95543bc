"""The fast path's HTTP client against real sockets: bodies, SSE framing, pooling, faults."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from gateway.servers.runtimes.http_channel import ChannelError, HttpChannel

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
        events = [event async for event in response.events()]
    assert events == [b'{"a":\n1}', b'{"b":2}']
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
