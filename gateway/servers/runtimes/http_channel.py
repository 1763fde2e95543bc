"""A lean HTTP/1.1 keep-alive client for the `tools/call` hot path.

The SDK's client transport (httpx, anyio memory streams, pydantic validation of
every message) costs close to a millisecond per call on this class of machine;
the gateway only needs to POST a few hundred bytes and read back a JSON body or an
SSE stream. This client keeps a pool of persistent connections per backend origin
and parses responses with ``httptools`` (the parser uvicorn uses), so a call costs
tens of microseconds of gateway CPU.

It is used only on the fast path; everything else (handshakes, the session's GET
stream, reconnects) stays with the SDK client, except the GET that resumes a fast
call's own response stream. Given the SSRF guard's pins, it connects to
the approved addresses only (the hostname stays in Host and in TLS): no DNS answer
obtained after the check is ever used (see :mod:`gateway.ssrf`).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

from gateway.servers.runtimes.sse import EventTooLarge, SseDecoder, SseEvent
from gateway.ssrf import HostPins, connect_pinned

_MAX_EVENT_BYTES = 16 * 1024 * 1024
# Servers close idle keep-alive connections (gunicorn after 2 s, uvicorn, Node and
# Apache after 5 s). A request written just as the server closes fails after it was
# sent, and a tools/call must not be repeated; so a connection idle longer than this
# is not reused.
_MAX_IDLE_SECONDS = 1.5
# A response body the caller stopped reading (an SSE stream after its answer) is read
# to its end in the background for this long, and at most this much, then given up.
_DRAIN_SECONDS = 5.0
_MAX_DRAIN_BYTES = 1024 * 1024


class ChannelError(Exception):
    """The connection failed or the response was not HTTP we understand."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        # Whether the request may have reached the backend (then it must not be retried).
        self.sent = sent


class _Unreachable(ChannelError):
    """No TCP connection to an address (the next pinned address may answer)."""


@dataclass
class Response:
    """One HTTP response; the body is read with :meth:`read` or :meth:`events`."""

    status: int
    headers: dict[bytes, bytes]
    _conn: _Connection = field(repr=False)
    sse: SseDecoder | None = field(default=None, repr=False)

    @property
    def content_type(self) -> bytes:
        return self.headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()

    async def read(self, limit: int = _MAX_EVENT_BYTES) -> bytes:
        """The whole body (raises :class:`ChannelError` beyond ``limit`` bytes)."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self._conn.body():
            size += len(chunk)
            if size > limit:
                raise ChannelError("response body too large", sent=True)
            parts.append(chunk)
        return b"".join(parts)

    async def events(self) -> AsyncIterator[SseEvent]:
        """The SSE events of the body, in order, as the WHATWG rules dispatch them.

        The decoder stays on :attr:`sse`: its ``last_event_id`` and ``retry`` are what a
        reconnect needs once the stream has ended or dropped.
        """
        decoder = self.sse = SseDecoder(_MAX_EVENT_BYTES)
        async for chunk in self._conn.body():
            try:
                events = decoder.feed(chunk)
            except EventTooLarge:
                raise ChannelError("SSE event too large", sent=True) from None
            for event in events:
                yield event


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0  # loop time it went back to the pool
        self._headers: dict[bytes, bytes] = {}
        self._head: asyncio.Future[int] | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._done = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        # Set while the rest of a body nobody reads is discarded (see drain()).
        self._draining: Callable[[_Connection], None] | None = None
        self._drain_timer: asyncio.TimerHandle | None = None
        self._drained = 0

    # --- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; both have write().
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ChannelError("unexpected protocol upgrade", sent=True))
        except httptools.HttpParserError as exc:
            self._fail(ChannelError(f"malformed HTTP response: {exc}", sent=True))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_draining()
        if not self._done:
            self._fail(ChannelError("connection closed by the backend", sent=True))

    # --- httptools callbacks ------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_result(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        if self._draining is not None:
            self._drained += len(body)
            if self._drained > _MAX_DRAIN_BYTES:
                self.close()
            return
        self._chunks.append(body)
        self._wake()

    def on_message_complete(self) -> None:
        self._done = True
        self.reusable = self.parser.should_keep_alive()
        release = self._draining
        if release is not None:
            self._stop_draining()
            release(self)
            return
        self._wake()

    # --- draining -----------------------------------------------------------------------
    def drain(self, release: Callable[[_Connection], None], timeout: float) -> None:
        """Discard the rest of the body as it comes, then ``release`` the connection.

        The SDKs answer a call on an SSE stream they end right after the answer, so the
        end usually follows within microseconds; closing instead would cost a new
        connection (and the backend an accept) on the next call. Callbacks and one
        timer, no task: this runs per call. Closed if the end does not come within
        ``timeout`` seconds or the rest is large.
        """
        if self._error is not None or self.closed:
            self.close()
            return
        self._chunks.clear()
        self._drained = 0
        self._draining = release
        self._drain_timer = asyncio.get_running_loop().call_later(timeout, self.close)

    def _stop_draining(self) -> None:
        self._draining = None
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None

    # --- use ----------------------------------------------------------------------------
    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        self.reusable = False
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
        self._wake()
        if self.transport is not None:
            self.transport.close()

    async def send(self, request: bytes) -> tuple[int, dict[bytes, bytes]]:
        loop = asyncio.get_running_loop()
        self._headers = {}
        self._chunks.clear()
        self._done = False
        self._error = None
        self.reusable = False
        self._head = loop.create_future()
        assert self.transport is not None
        self.transport.write(request)
        status = await self._head
        return status, self._headers

    async def body(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        while True:
            while self._chunks:
                yield self._chunks.popleft()
            if self._error is not None:
                raise self._error
            if self._done:
                return
            self._waiter = loop.create_future()
            await self._waiter
            self._waiter = None

    def close(self) -> None:
        self.reusable = False
        self._stop_draining()
        if self.transport is not None:
            self.transport.close()


class HttpChannel:
    """Pooled keep-alive connections to one backend URL: POSTs, and the GET that
    resumes a dropped SSE stream."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        *,
        max_idle: int = 64,
        connect_timeout: float = 10,
        max_idle_seconds: float = _MAX_IDLE_SECONDS,
        pins: HostPins | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = (
            (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        )
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        authority = parts.netloc.rpartition("@")[2]
        base = [f"Host: {authority}", "Connection: keep-alive"]
        base += [f"{name}: {value}" for name, value in headers.items()]
        self._head = "\r\n".join([f"POST {path} HTTP/1.1", *base]).encode("latin-1")
        self._get_head = "\r\n".join([f"GET {path} HTTP/1.1", *base]).encode("latin-1")
        self._idle: list[_Connection] = []
        self._max_idle = max_idle
        self._connect_timeout = connect_timeout
        self._max_idle_seconds = max_idle_seconds
        self._pins = pins
        self._closed = False

    async def _acquire(self) -> _Connection:
        if self._idle:
            oldest = asyncio.get_running_loop().time() - self._max_idle_seconds
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed and conn.idle_since >= oldest:
                    return conn
                conn.close()
        if self._pins is None:  # private URLs allowed: nothing was checked, nothing to pin
            return await self._connect(self.host)
        # A new connection only (never per call): pinned addresses are a dict lookup.
        return await connect_pinned(
            self._pins, self.host, self._connect, (_Unreachable,), self._refused
        )

    async def _connect(self, address: str) -> _Connection:
        """A connection to ``address``; TLS still names and verifies ``self.host``."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, conn = await loop.create_connection(
                    _Connection,
                    address,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except ssl.SSLError as exc:  # the address answered: another one would not help
            raise ChannelError(f"cannot connect: {exc}", sent=False) from None
        except (OSError, TimeoutError) as exc:
            raise _Unreachable(f"cannot connect: {exc}", sent=False) from None
        # uvloop may call connection_made only after create_connection returned.
        conn.transport = transport
        return conn

    @staticmethod
    def _refused(message: str) -> ChannelError:
        return ChannelError(f"cannot connect: {message}", sent=False)

    def _release(self, conn: _Connection) -> None:
        if (
            conn.reusable
            and not conn.closed
            and not self._closed
            and len(self._idle) < self._max_idle
        ):
            conn.idle_since = asyncio.get_running_loop().time()
            self._idle.append(conn)
        else:
            conn.close()

    def post(self, body: bytes, headers: dict[str, str] | bytes | None = None) -> _Exchange:
        """POST ``body``: ``async with channel.post(...) as response``. The connection
        returns to the pool once the body was read to the end. ``headers`` may come
        pre-encoded (see :func:`encode_headers`)."""
        if isinstance(headers, dict):
            headers = encode_headers(headers)
        request = b"%s%s\r\nContent-Length: %d\r\n\r\n%s" % (
            self._head,
            headers or b"",
            len(body),
            body,
        )
        return _Exchange(self, request)

    def get(self, headers: dict[str, str]) -> _Exchange:
        """GET the URL (``async with``, as :meth:`post`): a stream resumed with
        ``Last-Event-ID``, as the SDK client resumes one."""
        return _Exchange(self, b"%s%s\r\n\r\n" % (self._get_head, encode_headers(headers)))

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()


class _Exchange:
    """One request on a pooled connection (a class, not a generator: this is per call)."""

    __slots__ = ("channel", "conn", "request")

    def __init__(self, channel: HttpChannel, request: bytes) -> None:
        self.channel = channel
        self.request = request
        self.conn: _Connection | None = None

    async def __aenter__(self) -> Response:
        conn = self.conn = await self.channel._acquire()
        try:
            status, response_headers = await conn.send(self.request)
        except BaseException:
            conn.close()
            raise
        return Response(status, response_headers, conn)

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        conn = self.conn
        assert conn is not None
        if exc_type is not None:
            conn.close()  # failed mid-exchange: the connection is unusable
        elif not conn._done:
            conn.drain(self.channel._release, _DRAIN_SECONDS)  # the caller stopped reading
        else:
            self.channel._release(conn)


def encode_headers(headers: dict[str, str]) -> bytes:
    """Request headers as :meth:`HttpChannel.post` appends them."""
    return "".join(f"\r\n{k}: {v}" for k, v in headers.items()).encode("latin-1")
