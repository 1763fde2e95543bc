"""uvicorn's HTTP protocol, with a response's head and body sent in one write.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start``, and its body as a second write. On a socket that is two
system calls, two TCP segments and two wake-ups of the agent for every answer; for a
small JSON answer (a response cache hit, a refusal) that was a tenth of the CPU the
whole request cost. Here the head is held until the body's first write, which
normally follows at once (the gateway's JSON answers send both without waiting), and
goes out with it. A head the app follows with nothing right away (an SSE stream that
waits for its first event) still leaves at the event loop's next turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

# uvicorn's faster parser (uvicorn[standard] brings httptools), as `serve` uses it.
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# How every response uvicorn writes begins (and nothing else it writes does, but the
# body of a response that happens to start so: held too, and written as promptly).
_HEAD = b"HTTP/1.1 "


class CoalescingTransport:
    """A transport that holds a response head until the next write (see the module
    docstring); everything else goes to the real transport as it is."""

    __slots__ = ("_held", "_loop", "_timer", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._held: bytes | None = None
        self._timer: asyncio.Handle | None = None
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:  # the body (or anything else) after a head: one write
            self._held = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.transport.write(held + data)
        elif data[:9] == _HEAD:
            self._held = bytes(data)
            self._timer = self._loop.call_soon(self.flush)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        """Write a held head now (the next loop turn, or before the transport closes)."""
        held = self._held
        self._timer = None
        if held is not None:
            self._held = None
            self.transport.write(held)

    def writelines(self, data: Any) -> None:
        self.flush()
        self.transport.writelines(data)

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self._held = None
        self.transport.abort()

    # What uvicorn calls per request, forwarded without __getattr__'s lookup.
    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing each response head with its body."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport))  # type: ignore[arg-type]
