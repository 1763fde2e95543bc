"""An incremental ``text/event-stream`` decoder that follows the WHATWG rules exactly.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

Backends are written against many SSE libraries, and each one exercises a different
corner of the grammar: the MCP SDKs open a response stream with a *priming* event (an
id, and a ``data:`` line with nothing on it) so the stream can be resumed; others send
``retry:``, comments as keep-alives, CR-only line ends, or split a line across TCP
segments. A reader that handles only the common shape turns those into failed calls,
so this one implements the whole interpretation algorithm, on bytes (every field name
and delimiter is ASCII, and UTF-8 never hides an ASCII byte inside a multi-byte
sequence, so splitting bytes gives the same lines as splitting decoded text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOM = b"\xef\xbb\xbf"
# A line ends at CRLF, LF or CR; the alternation tries CRLF first.
_EOL = re.compile(rb"\r\n|\r|\n")


MAX_RETRY_MS = 60_000  # the longest reconnection delay a backend may ask for


class EventTooLarge(Exception):
    """One event (its data so far, or an unterminated line) exceeds the size limit."""


@dataclass(slots=True)  # not frozen: a frozen dataclass costs more to build, per event
class SseEvent:
    """One dispatched event: its data (lines joined by LF), type and the last event id."""

    data: bytes
    type: bytes = b"message"
    id: bytes = b""

    @property
    def is_message(self) -> bool:
        """Whether an MCP client acts on it: a ``message`` event that carries data.

        The SDK clients skip everything else: other event types, and the priming
        event (its data is empty; only its id counts, for resumption).
        """
        return self.type == b"message" and bool(self.data)


class SseDecoder:
    """Feed body chunks in, get dispatched events out (see the module docstring).

    ``last_event_id`` and ``retry`` are the stream's state for a reconnect
    (``Last-Event-ID`` and the delay in milliseconds); ``last_event_id`` is updated
    at every blank line, including those that dispatch nothing (the priming event).
    """

    __slots__ = (
        "_data",
        "_head",
        "_id",
        "_limit",
        "_partial",
        "_partial_size",
        "_size",
        "_skip_lf",
        "_started",
        "_type",
        "last_event_id",
        "retry",
    )

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._started = False  # whether the BOM question is settled
        self._head = b""  # the first bytes, while they could still be a BOM
        self._partial: list[bytes] = []  # the unterminated line so far
        self._partial_size = 0
        # A CR ended the last chunk: an LF starting the next one belongs to it.
        self._skip_lf = False
        self._data: list[bytes] = []  # the data lines of the event being built
        self._size = 0
        self._type = b""
        self._id = b""  # the last event ID buffer
        self.last_event_id = b""
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events completed by ``chunk`` (raises :class:`EventTooLarge`)."""
        if not self._started:
            chunk = self._head + chunk
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._head = chunk
                return []
            self._started = True
            self._head = b""
            chunk = chunk.removeprefix(_BOM)
        if not chunk:  # (would otherwise forget a pending CR)
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        # bytes.find, not `in`: `in` on bytes first tries the needle as an int, raising
        # and dropping a TypeError inside CPython (~2,000 instructions) per test.
        if chunk.find(b"\n") < 0 and chunk.find(b"\r") < 0:
            if chunk:  # no line ends: kept as parts, so a long line costs linear time
                self._partial.append(chunk)
                self._partial_size += len(chunk)
                self._check()
            return []
        if self._partial:
            self._partial.append(chunk)
            chunk = b"".join(self._partial)
            self._partial = []
            self._partial_size = 0
        if chunk.find(b"\r") >= 0:
            # CRLF is the common case (sse_starlette, so the Python SDK): a replace is
            # cheaper than the regular expression, which only lone CRs need.
            crlf = chunk.replace(b"\r\n", b"\n")
            if crlf.find(b"\r") >= 0:
                lines = _EOL.split(chunk)
                self._skip_lf = chunk[-1:] == b"\r"
            else:
                lines = crlf.split(b"\n")
        else:
            lines = chunk.split(b"\n")
        rest = lines.pop()
        events: list[SseEvent] = []
        for line in lines:
            if line:
                self._field(line)
            else:
                event = self._dispatch()
                if event is not None:
                    events.append(event)
        if rest:
            self._partial.append(rest)
            self._partial_size = len(rest)
        self._check()
        return events

    def _field(self, line: bytes) -> None:
        if line[0] == 0x3A:  # ':' starts a comment
            return
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
            self._size += len(value) + 1
        elif name == b"event":
            self._type = value
        elif name == b"id" and b"\0" not in value:  # an id with NUL is ignored
            self._id = value
        elif name == b"retry" and value.isdigit():  # ASCII digits only (bytes.isdigit)
            # A backend's delay is bounded: thousands of digits would make int() raise,
            # a huge value would stall the call until its timeout.
            digits = value.lstrip(b"0") or b"0"
            self.retry = MAX_RETRY_MS if len(digits) > 6 else min(int(digits), MAX_RETRY_MS)
        # Any other field name is ignored.

    def _dispatch(self) -> SseEvent | None:
        self.last_event_id = self._id
        if not self._data:
            self._type = b""
            return None
        # The spec appends data + LF per line and strips one trailing LF: a join.
        event = SseEvent(b"\n".join(self._data), self._type or b"message", self._id)
        self._data = []
        self._size = 0
        self._type = b""
        return event

    def _check(self) -> None:
        if self._size + self._partial_size > self._limit:
            raise EventTooLarge(f"SSE event larger than {self._limit} bytes")
