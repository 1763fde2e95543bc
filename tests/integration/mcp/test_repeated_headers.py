"""Headers sent more than once on `/mcp`: the MCP front reads a request's headers from
one dictionary (gateway/asgi_headers.py), which keeps a repeated name's last value, so
where the first one counts it reads the list instead.

The first `Authorization` is the credential (as everywhere else the gateway reads
one); a repeated `Mcp-Session-Id` is refused (the SDK would use one, the fast path
another). The app runs in process on the test database.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import AppHarness

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
BASE = [("host", "127.0.0.1:8000"), ("accept", "application/json, text/event-stream")]


async def _post(harness: AppHarness, *headers: tuple[str, str]) -> Any:
    return await harness.client.post("/mcp", json=INIT, headers=[*BASE, *headers])


async def test_the_first_authorization_header_is_the_credential(harness: AppHarness) -> None:
    good = harness.auth()["Authorization"]
    bad = "Bearer mgw_live_not_a_key_at_all_000000000000000000"
    r = await _post(harness, ("authorization", good), ("authorization", bad))
    assert r.status_code == 200, r.text
    r = await _post(harness, ("authorization", bad), ("authorization", good))
    assert r.status_code == 401, r.text
    r = await _post(harness, ("authorization", good))
    assert r.status_code == 200, r.text


async def test_a_repeated_session_header_is_refused(harness: AppHarness) -> None:
    auth = ("authorization", harness.auth()["Authorization"])
    session = ("mcp-session-id", "a" * 32)
    r = await _post(harness, auth, ("mcp-protocol-version", "2025-11-25"), session, session)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["data"]["code"] == "invalid_session_id"
