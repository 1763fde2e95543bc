"""A backend that answers `tools/call` with a JSON-RPC error: every entry point says so.

The backend (tests/fixtures/http_backend.py, a real process) answers the `reject`
tool with `{"error": {"code": ..., "message": "text is required"}}`. REST reports it
as a tool error carrying the backend's code and message (`backend_error`); `/mcp`
passes the JSON-RPC error on, on the fast path and the SDK path alike. Neither calls
it a lost connection (-32000 is the SDK's code for one *and* a common backend code),
and a secret the backend echoes in its error is masked.
"""

# ruff: noqa: F811 (the `gateway` and `backend` fixtures come from test_fastpath)
from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.mcp.test_fastpath import (  # noqa: F401 (fixtures)
    AUTH,
    SECRET,
    _modern_call,
    backend,
    gateway,
)
from tests.support import Server


def _execute(server: Server, arguments: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(
        f"{server.url}/api/v1/tools/execute",
        json={"tool": "fix__reject", "arguments": arguments},
        headers=AUTH,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.parametrize("code", [-32602, -32000])
def test_rest_reports_the_backends_error_code_and_message(gateway: Server, code: int) -> None:
    body = _execute(gateway, {"code": code})
    assert body["isError"] is True
    text = body["content"][0]["text"]
    assert str(code) in text and "text is required" in text, text
    assert "lost" not in text and "connection" not in text, text
    assert body["backend_error"] == {"code": code, "message": "text is required"}
    # The backend is fine: the next call works.
    ok = httpx.post(
        f"{gateway.url}/api/v1/tools/execute",
        json={"tool": "fix__echo", "arguments": {"text": "still here"}},
        headers=AUTH,
    ).json()
    assert ok["content"][0]["text"] == "still here" and ok["backend_error"] is None


@pytest.mark.parametrize("route", ["direct", "sdk"])
@pytest.mark.parametrize("code", [-32602, -32000])
def test_mcp_passes_the_backends_error_on(gateway: Server, route: str, code: int) -> None:
    # EXECUTE_TOOL is served by the SDK path; the tool itself by the fast path.
    if route == "direct":
        r = _modern_call(gateway, "fix__reject", {"code": code})
    else:
        r = _modern_call(
            gateway, "EXECUTE_TOOL", {"tool": "fix__reject", "arguments": {"code": code}}
        )
    assert r.headers.get("mcpgw-route") == ("direct" if route == "direct" else None)
    body = r.json()
    assert "result" not in body, body  # not a tool result saying "connection lost"
    assert body["error"]["code"] == code
    assert body["error"]["message"] == "text is required"


@pytest.mark.parametrize("route", ["direct", "sdk"])
def test_a_secret_in_a_backend_error_is_masked(gateway: Server, route: str) -> None:
    if route == "direct":
        r = _modern_call(gateway, "fix__reject", {"leak": True})
    else:
        r = _modern_call(
            gateway, "EXECUTE_TOOL", {"tool": "fix__reject", "arguments": {"leak": True}}
        )
    error = r.json()["error"]
    assert SECRET not in r.text, r.text
    assert error["message"] == "text is required (my key is ***)"
    assert error["data"] == {"key": "***"}
    rest = _execute(gateway, {"leak": True})
    assert SECRET not in str(rest)
    assert rest["backend_error"]["data"] == {"key": "***"}
