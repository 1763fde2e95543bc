"""The HTTP contract as a client reads it: OpenAPI error statuses and 405 ``Allow``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import AppHarness

_METHODS = ("get", "put", "post", "delete", "patch")
ERROR_BODY = "#/components/schemas/ErrorBody"


@pytest.fixture
def backend() -> str:
    """The contract does not depend on the database: SQLite only."""
    return "sqlite"


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, item[method])
        for path, item in spec["paths"].items()
        if path.startswith("/api/v1/")
        for method in _METHODS
        if method in item
    ]


async def test_openapi_lists_the_error_statuses_of_every_operation(harness: AppHarness) -> None:
    spec = (await harness.client.get("/openapi.json")).json()
    operations = _operations(spec)
    assert len(operations) > 50
    missing: list[str] = []
    for method, path, op in operations:
        responses = op["responses"]
        expected = {"401", "403"}
        if op.get("parameters") or "requestBody" in op:
            expected.add("422")
        if "{" in path:
            expected.add("404")
        if "requestBody" in op:
            expected.add("413")
            if "application/json" in op["requestBody"]["content"]:
                expected.add("400")  # invalid_json
        missing += [f"{method} {path}: {s}" for s in sorted(expected - set(responses))]
        for status, response in responses.items():
            if int(status) >= 400:
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if schema != {"$ref": ERROR_BODY}:
                    missing.append(f"{method} {path}: {status} is not an ErrorBody")
    assert not missing, "\n".join(missing)
    assert set(spec["components"]["schemas"]["ErrorBody"]["required"]) == {"code", "message"}
    # What only the services know: conflicts, relayed backend errors, unavailable providers.
    ops = {(m, p): op["responses"] for m, p, op in operations}
    assert "409" in ops[("POST", "/api/v1/users")]
    assert "409" in ops[("POST", "/api/v1/skills/upload")]
    assert {"404", "409", "502"} <= set(ops[("POST", "/api/v1/skills/import")])
    assert {"409", "502", "503"} <= set(ops[("POST", "/api/v1/sandboxes")])
    assert "404" in ops[("POST", "/api/v1/tools/execute")]  # the tool's server is in the body
    assert {"413", "504"} <= set(ops[("PUT", "/api/v1/sandboxes/{sandbox_id}/files")])
    assert "503" in spec["paths"]["/readyz"]["get"]["responses"]


# (method, path, what Allow must list)
CASES = [
    ("DELETE", "/api/v1/me", {"GET"}),
    ("PUT", "/healthz", {"GET"}),
    ("DELETE", "/api/v1/users", {"GET", "POST"}),
    ("PATCH", "/api/v1/keys", {"GET", "POST"}),
    ("PUT", "/api/v1/teams/t/members/u", {"DELETE"}),
    ("POST", "/api/v1/skills/s/stats", {"GET"}),
    ("DELETE", "/api/v1/skills/s/links", {"GET", "PUT", "POST"}),
    ("GET", "/api/v1/sandboxes/x/exec", {"POST"}),
    ("PATCH", "/api/v1/sandboxes/x/files", {"GET", "PUT", "DELETE"}),
    ("PUT", "/mcp", {"GET", "POST", "DELETE"}),
    ("HEAD", "/mcp", {"GET", "POST", "DELETE"}),
    ("PATCH", "/mcp/servers/demo", {"GET", "POST", "DELETE"}),
    ("GET", "/messages/", {"POST"}),
    ("POST", "/sse", {"GET"}),
    ("HEAD", "/sse", {"GET"}),
]


@pytest.mark.parametrize(
    ("method", "path", "allowed"), CASES, ids=[f"{m} {p}" for m, p, _ in CASES]
)
async def test_405_names_every_allowed_method(
    harness: AppHarness, method: str, path: str, allowed: set[str]
) -> None:
    r = await harness.client.request(method, path, headers=harness.auth())
    assert r.status_code == 405, r.text
    assert {m.strip() for m in r.headers["allow"].split(",")} == allowed
    if method != "HEAD":
        body = r.json()
        assert body["code"] == "method_not_allowed"
        assert all(m in body["message"] for m in allowed)


async def test_the_methods_allow_names_are_served(harness: AppHarness) -> None:
    """Allow is not a guess: each method it names reaches a route (never another 405)."""
    for method, path, _ in CASES:
        if not path.startswith("/api/"):
            continue  # the MCP transports open sessions and streams
        r = await harness.client.request(method, path, headers=harness.auth())
        for allowed in r.headers["allow"].split(", "):
            again = await harness.client.request(allowed, path, headers=harness.auth())
            assert again.status_code != 405, (allowed, path)


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_the_sdk_405_of_the_stateless_era_is_json_too(
    harness: AppHarness, method: str
) -> None:
    """2026-07-28 has no GET stream or DELETE: the SDK's 405 comes out as the gateway's JSON."""
    headers = {
        **harness.auth(),
        "host": "127.0.0.1:8000",
        "mcp-protocol-version": "2026-07-28",
        "accept": "application/json, text/event-stream",
    }
    r = await harness.client.request(method, "/mcp", headers=headers)
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == "POST"
    assert r.json()["code"] == "method_not_allowed"
    assert "POST" in r.json()["message"]


async def test_the_sdk_transport_refusals_are_json(harness: AppHarness) -> None:
    """The SDK's DNS-rebinding check answers in plain text; through the gateway it is JSON."""
    headers = {**harness.auth(), "accept": "application/json, text/event-stream"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    r = await harness.client.post("/mcp", json=init, headers={**headers, "host": "evil.example"})
    assert r.status_code == 421, r.text
    assert r.json()["code"] == "host_not_allowed"
    assert "MCPGW_MCP_ALLOWED_HOSTS" in r.json()["message"]
    r = await harness.client.post(
        "/mcp",
        json=init,
        headers={**headers, "host": "127.0.0.1:8000", "origin": "http://evil.example"},
    )
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "origin_not_allowed"
    r = await harness.client.get("/sse", headers={**headers, "host": "evil.example"})
    assert r.status_code == 421, r.text
    assert r.json()["code"] == "host_not_allowed"


@pytest.mark.parametrize(
    ("header", "code", "says"),
    [
        (None, "unauthenticated", "missing Authorization header"),
        ("Basic abc", "unauthenticated", "must be 'Bearer <key>'"),
        ("Bearer   ", "unauthenticated", "must be 'Bearer <key>'"),
        ("Bearer " + "k" * 4097, "invalid_api_key", "credential too long"),
    ],
)
async def test_rest_and_mcp_read_the_authorization_header_alike(
    harness: AppHarness, header: str | None, code: str, says: str
) -> None:
    """One Bearer parser: the same refusal, code and message on REST and on `/mcp`."""
    headers = {"Authorization": header} if header is not None else {}
    rest = await harness.client.get("/api/v1/servers", headers=headers)
    mcp = await harness.client.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={**headers, "Accept": "application/json, text/event-stream"},
    )
    for answer in (rest, mcp):
        assert answer.status_code == 401, answer.text
        assert answer.json()["code"] == code, answer.text
        assert says in answer.json()["message"]
