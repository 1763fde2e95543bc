"""The gateway's HTTP protocol (gateway/http_protocol.py): a response's head goes out
with its body in one write, and a head with no body yet still goes out promptly.

First on a transport that records its writes, then through a real uvicorn server on
loopback, read by a raw socket client.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from gateway.http_protocol import CoalescingTransport, GatewayHttpProtocol

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recorded:
    """The part of a transport the wrapper writes to, recording each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def _wrapped() -> tuple[CoalescingTransport, Recorded]:
    inner = Recorded()
    return CoalescingTransport(inner), inner  # type: ignore[arg-type]


async def test_a_head_and_its_body_are_one_write() -> None:
    transport, inner = _wrapped()
    transport.write(HEAD)
    assert inner.writes == []  # held for the body
    transport.write(b"{}")
    assert inner.writes == [HEAD + b"{}"]
    await asyncio.sleep(0)
    assert inner.writes == [HEAD + b"{}"]  # nothing left to flush


async def test_a_head_alone_leaves_at_the_loops_next_turn() -> None:
    transport, inner = _wrapped()
    transport.write(HEAD)
    await asyncio.sleep(0)
    assert inner.writes == [HEAD]
    transport.write(b"event: message\r\n\r\n")  # a stream's later events go as they come
    assert inner.writes == [HEAD, b"event: message\r\n\r\n"]


async def test_closing_writes_a_held_head_first_and_an_abort_drops_it() -> None:
    transport, inner = _wrapped()
    transport.write(HEAD)
    transport.close()
    assert inner.writes == [HEAD] and inner.closed
    transport, inner = _wrapped()
    transport.write(HEAD)
    transport.abort()
    await asyncio.sleep(0)
    assert inner.writes == [] and inner.aborted


async def test_other_writes_and_calls_pass_through() -> None:
    transport, inner = _wrapped()
    transport.write(b"partial body")
    assert inner.writes == [b"partial body"]
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
    assert transport.is_closing() is False


# --- through uvicorn ------------------------------------------------------------------


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/json`: a whole JSON answer; `/stream`: a head, then an event a moment later."""
    if scope["type"] != "http":
        return
    await receive()
    if scope["path"] == "/json":
        body = b'{"ok":true}'
        headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await asyncio.sleep(0.5)
    await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def _serving() -> AsyncIterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = uvicorn.Config(
        _app, host="127.0.0.1", port=port, http=GatewayHttpProtocol, lifespan="off", log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def _get(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def test_uvicorn_answers_json_whole_and_keeps_the_connection() -> None:
    async with _serving() as port:
        reader, writer = await _get(port, "/json")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: 11" in head
        assert await asyncio.wait_for(reader.readexactly(11), 5) == b'{"ok":true}'
        writer.write(b"GET /json HTTP/1.1\r\nhost: x\r\n\r\n")  # again, kept alive
        await asyncio.wait_for(reader.readuntil(b'{"ok":true}'), 5)
        writer.close()


async def test_uvicorn_sends_a_streams_head_before_its_first_event() -> None:
    async with _serving() as port:
        reader, writer = await _get(port, "/stream")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.4)  # before the event
        assert head.startswith(b"HTTP/1.1 200")
        assert b"data: 1" in await asyncio.wait_for(reader.readuntil(b"data: 1\n\n\r\n"), 5)
        writer.close()
