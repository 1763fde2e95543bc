"""One dictionary of a request's headers per request (gateway/asgi_headers.py), and the
audit row's reading of it (gateway/audit/rows.py)."""

from __future__ import annotations

from typing import Any

from gateway.asgi_headers import HEADERS_KEY, first_header, header_map
from gateway.audit.rows import _client


def _scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "headers": list(headers)}


def test_the_map_is_made_once_and_keeps_a_repeated_names_last_value() -> None:
    scope = _scope((b"a", b"1"), (b"b", b"2"), (b"a", b"3"))
    found = header_map(scope)
    assert found == {b"a": b"3", b"b": b"2"}
    assert header_map(scope) is found and scope[HEADERS_KEY] is found


def test_the_first_value_is_read_from_the_list_when_a_name_repeats() -> None:
    assert first_header(_scope((b"a", b"1"), (b"a", b"3")), b"a") == b"1"
    assert first_header(_scope((b"a", b"1"), (b"b", b"2")), b"b") == b"2"
    assert first_header(_scope((b"a", b"1"), (b"a", b"3")), b"z") is None
    assert first_header(_scope(), b"a") is None


def test_the_audit_row_reads_the_same_client_either_way() -> None:
    headers = (
        (b"user-agent", b"agent/1" + b"x" * 300),
        (b"mcp-protocol-version", b"2025-11-25"),
        (b"user-agent", b"agent/2"),
    )
    listed = _client(_scope(*headers))
    mapped = _scope(*headers)
    header_map(mapped)
    assert _client(mapped) == listed == ("agent/2", "2025-11-25")
    assert _client(_scope((b"user-agent", b"y" * 300))) == ("y" * 256, None)
    long = _scope((b"user-agent", b"y" * 300))
    header_map(long)
    assert _client(long) == ("y" * 256, None)
