"""The SSE decoder against the WHATWG event-stream interpretation rules.

One example per rule, then a property test: random event streams (multi-line and
unicode data, lines that look like fields, priming events, comments, ``retry:``,
``id:``, unknown fields), written with random line ends and an optional BOM and cut
into random chunks, decode to exactly the events the rules dispatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.servers.runtimes.sse import MAX_RETRY_MS, EventTooLarge, SseDecoder, SseEvent


def decode(*chunks: bytes, limit: int = 1 << 20) -> tuple[list[SseEvent], SseDecoder]:
    decoder = SseDecoder(limit)
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events, decoder


def datas(*chunks: bytes) -> list[bytes]:
    return [event.data for event in decode(*chunks)[0]]


# --- one example per rule ---------------------------------------------------------------


def test_priming_event_dispatches_empty_data_and_is_not_a_message() -> None:
    # What the MCP SDK servers send first (sse_starlette's encoding of data="").
    events, decoder = decode(b"id: s1_0\r\nretry: 500\r\ndata: \r\n\r\n", b"data: {}\r\n\r\n")
    assert [(e.data, e.id, e.is_message) for e in events] == [
        (b"", b"s1_0", False),
        (b"{}", b"s1_0", True),
    ]
    assert decoder.retry == 500


def test_a_blank_line_with_an_empty_data_buffer_dispatches_nothing() -> None:
    events, decoder = decode(b"id: 9\n\nevent: x\n\ndata: a\n\n")
    assert [(e.data, e.type, e.id) for e in events] == [(b"a", b"message", b"9")]
    assert decoder.last_event_id == b"9"  # set even though nothing was dispatched


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_end(eol: bytes) -> None:
    assert datas(b"data: a" + eol + b"data: b" + eol + eol) == [b"a\nb"]


def test_a_cr_at_a_chunk_end_and_an_lf_in_the_next_are_one_line_end() -> None:
    assert datas(b"data: a\r", b"\n\r", b"\ndata: b\r", b"\r") == [b"a", b"b"]


def test_an_empty_chunk_keeps_a_pending_cr() -> None:
    # Found by the property test: an empty chunk between "\r" and "\n".
    assert datas(b"data: a\r", b"", b"\n\n") == [b"a"]


def test_comments_are_ignored() -> None:
    assert datas(b":keep-alive\n: data: no\ndata: yes\n:\n\n") == [b"yes"]


def test_one_leading_space_is_stripped_from_a_value() -> None:
    assert datas(b"data:x\n\ndata: x\n\ndata:  x\n\n") == [b"x", b"x", b" x"]


def test_a_field_without_a_colon_has_an_empty_value() -> None:
    # "data" appends an empty line: the buffer is "\n", so an empty event is dispatched.
    events, _ = decode(b"data\n\ndata\ndata\n\n")
    assert [e.data for e in events] == [b"", b"\n"]


def test_only_the_first_colon_separates() -> None:
    assert datas(b'data: {"a": "b:c"}\n\n') == [b'{"a": "b:c"}']


def test_event_sets_the_type_for_one_event() -> None:
    events, _ = decode(b"event: ping\ndata: 1\n\ndata: 2\n\n")
    assert [(e.type, e.data, e.is_message) for e in events] == [
        (b"ping", b"1", False),
        (b"message", b"2", True),
    ]


def test_an_id_persists_and_one_with_nul_is_ignored() -> None:
    events, _ = decode(b"id: 1\ndata: a\n\ndata: b\n\nid: 2\x003\ndata: c\n\nid\ndata: d\n\n")
    assert [(e.data, e.id) for e in events] == [
        (b"a", b"1"),
        (b"b", b"1"),
        (b"c", b"1"),
        (b"d", b""),
    ]


@pytest.mark.parametrize(
    ("line", "retry"), [(b"retry: 250", 250), (b"retry: 2.5", None), (b"retry:", None)]
)
def test_retry_takes_ascii_digits_only(line: bytes, retry: int | None) -> None:
    assert decode(line + b"\n\n")[1].retry == retry
    assert decode("retry: ١٢".encode() + b"\n\n")[1].retry is None  # Arabic-Indic digits


def test_a_backend_cannot_ask_for_an_endless_or_crashing_delay() -> None:
    """retry is clamped to MAX_RETRY_MS; 5,000 digits would make int() raise."""
    assert decode(b"retry: " + b"9" * 5000 + b"\n\n")[1].retry == MAX_RETRY_MS
    assert decode(b"retry: 99999999\n\n")[1].retry == MAX_RETRY_MS
    assert decode(b"retry: 0000000000000000000250\n\n")[1].retry == 250


def test_unknown_fields_are_ignored_and_names_are_case_sensitive() -> None:
    assert datas(b"Data: no\nfoo: bar\n data: no\ndata: yes\n\n") == [b"yes"]


def test_a_bom_at_the_start_is_dropped_even_when_split() -> None:
    assert datas(b"\xef", b"\xbb", b"\xbfdata: a\n\n") == [b"a"]
    # Only at the start: later it is part of a line (here an unknown field name).
    assert datas(b"data: a\n\n\xef\xbb\xbfdata: b\n\n") == [b"a"]


def test_an_unterminated_event_at_the_end_is_not_dispatched() -> None:
    assert datas(b"data: a\n\ndata: b\n") == [b"a"]


def test_the_size_limit_covers_data_and_an_unterminated_line() -> None:
    with pytest.raises(EventTooLarge):
        decode(b"data: " + b"x" * 100 + b"\n", limit=64)
    with pytest.raises(EventTooLarge):
        decode(*[b"data: xxxxxxxxxx"] + [b"x" * 10] * 10, limit=64)
    events, _ = decode(b"data: " + b"x" * 50 + b"\n\n" + b"data: " + b"y" * 50 + b"\n\n", limit=64)
    assert len(events) == 2  # the limit is per event


# --- the property -----------------------------------------------------------------------

_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=12)
# Values that look like SSE syntax, to be sure they stay values.
_TRICKY = st.sampled_from(["", " ", "data: x", "id: 7", ":", "event: ping", "retry: 1", "\x00"])
_VALUE = st.one_of(_TEXT, _TRICKY)


@dataclass
class _Event:
    data: list[str]
    type: str | None
    id: str | None
    retry: str | None
    extra: list[str]  # comments and unknown fields


def _field(name: str, value: str, form: int) -> str:
    if value == "" and form == 0:
        return name
    if value.startswith(" ") or form == 1:
        return f"{name}: {value}"
    return f"{name}:{value}"


@st.composite
def _events(draw: st.DrawFn) -> _Event:
    priming = draw(st.booleans())
    return _Event(
        data=[""] if priming else draw(st.lists(_VALUE, max_size=4)),
        type=draw(st.none() | st.sampled_from(["", "message", "ping", "endpoint"])),
        id=draw(st.none() | _VALUE),
        retry=draw(st.none() | st.sampled_from(["0", "1500", "x", "15 ", "-1"])),
        extra=draw(
            st.lists(
                st.one_of(
                    _TEXT.map(lambda t: ":" + t),
                    st.sampled_from(["foo: bar", "Data: no", " data: no", "ID: 3", "retr: 1"]),
                ),
                max_size=2,
            )
        ),
    )


@st.composite
def _stream(draw: st.DrawFn) -> tuple[list[bytes], list[SseEvent], int | None]:
    """Chunks of a serialised stream, the events the rules dispatch, the last retry."""
    events = draw(st.lists(_events(), max_size=6))
    lines: list[str] = []
    expected: list[SseEvent] = []
    last_id = ""
    retry: int | None = None
    for event in events:
        block = [_field("data", value, draw(st.integers(0, 2))) for value in event.data]
        others = list(event.extra)
        if event.type is not None:
            others.append(_field("event", event.type, draw(st.integers(0, 2))))
        if event.id is not None:
            others.append(_field("id", event.id, draw(st.integers(0, 2))))
            if "\x00" not in event.id:
                last_id = event.id
        if event.retry is not None:
            others.append(f"retry: {event.retry}")
            if event.retry.isdigit():
                retry = int(event.retry)
        for line in others:  # anywhere among the data lines (their order is kept)
            block.insert(draw(st.integers(0, len(block))), line)
        lines += [*block, ""]
        if event.data:
            kind = (event.type or "message").encode()
            expected.append(SseEvent("\n".join(event.data).encode(), kind, last_id.encode()))
    if draw(st.booleans()):
        lines.append("data: never dispatched")  # the stream ends mid-event
    body = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    previous = ""
    for line in lines:
        eols = ["\n", "\r\n", "\r"]
        if previous == "\r" and line == "":
            eols.remove("\n")  # CR then a blank line's LF would read as one CRLF
        previous = draw(st.sampled_from(eols))
        body += (line + previous).encode()
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=8)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    return chunks, expected, retry


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_stream())
def test_random_streams_decode_to_the_events_the_rules_dispatch(
    case: tuple[list[bytes], list[SseEvent], int | None],
) -> None:
    chunks, expected, retry = case
    events, decoder = decode(*chunks)
    assert events == expected
    assert decoder.retry == retry
    # What the fast path forwards: message events with data, in order.
    assert [e.data for e in events if e.is_message] == [
        e.data for e in expected if e.type == b"message" and e.data
    ]
