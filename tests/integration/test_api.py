"""The REST API through httpx against the real app (lifespan, middleware, both databases)."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from gateway.state import GatewayState
from tests.conftest import BOOTSTRAP_KEY, AppHarness


def _assert_error(response: object, status: int, code: str | None = None) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("application/json")  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert isinstance(body.get("code"), str) and isinstance(body.get("message"), str), body
    if code is not None:
        assert body["code"] == code, body
    return body  # type: ignore[no-any-return]


async def _new_user_key(h: AppHarness, email: str, role: str, **key: object) -> tuple[str, str]:
    r = await h.client.post("/api/v1/users", json={"email": email, "role": role}, headers=h.auth())
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    r = await h.client.post(
        "/api/v1/keys", json={"name": "t", "user_id": user_id, **key}, headers=h.auth()
    )
    assert r.status_code == 201, r.text
    return user_id, r.json()["key"]


async def test_health_and_readiness(harness: AppHarness) -> None:
    r = await harness.client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = await harness.client.get("/readyz")
    assert r.status_code == 200, r.text
    checks = r.json()["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["migrations"]["current"] == checks["migrations"]["head"]


async def test_readyz_reports_unreachable_database(harness: AppHarness) -> None:
    state: GatewayState = harness.app.state.gw  # type: ignore[attr-defined]
    await state.db.dispose()
    original = state.db.ping

    async def broken() -> None:
        raise ConnectionRefusedError("db down")

    state.db.ping = broken  # type: ignore[method-assign]
    try:
        body = _assert_error(await harness.client.get("/readyz"), 503, "not_ready")
        assert body["checks"]["database"]["status"] == "error"  # type: ignore[index]
    finally:
        state.db.ping = original  # type: ignore[method-assign]


async def test_me_with_bootstrap_key_and_without(harness: AppHarness) -> None:
    r = await harness.client.get("/api/v1/me", headers=harness.auth())
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["user"]["role"] == "admin"
    assert me["key"]["prefix"].startswith("mgw_live_")
    assert BOOTSTRAP_KEY not in r.text  # the secret is never echoed
    r = await harness.client.get("/api/v1/me")
    _assert_error(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"] == "Bearer"
    _assert_error(await harness.client.get("/api/v1/me", headers={"Authorization": "Basic x"}), 401)
    _assert_error(
        await harness.client.get("/api/v1/me", headers=harness.auth("mgw_live_wrong")),
        401,
        "invalid_api_key",
    )


async def test_key_lifecycle_and_immediate_revocation(harness: AppHarness) -> None:
    h = harness
    r = await h.client.post(
        "/api/v1/keys", json={"name": "ci", "scopes": ["tools:execute"]}, headers=h.auth()
    )
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["key"]
    assert secret.startswith("mgw_live_") and created["prefix"] == secret[:15]
    assert (await h.client.get("/api/v1/me", headers=h.auth(secret))).status_code == 200
    listing = (await h.client.get("/api/v1/keys", headers=h.auth())).json()
    assert {k["name"] for k in listing["items"]} == {"bootstrap", "ci"}
    assert all("key" not in k and "key_hash" not in k for k in listing["items"])
    assert secret not in str(listing)
    # the new key is narrow: it cannot manage keys
    _assert_error(await h.client.get("/api/v1/keys", headers=h.auth(secret)), 403, "forbidden")
    r = await h.client.delete(f"/api/v1/keys/{created['id']}", headers=h.auth())
    assert r.status_code == 204
    # cached authentication is dropped at once in this process
    _assert_error(await h.client.get("/api/v1/me", headers=h.auth(secret)), 401)
    revoked = await h.client.get("/api/v1/keys?include_revoked=true", headers=h.auth())
    assert any(k["revoked_at"] for k in revoked.json()["items"])
    _assert_error(await h.client.delete("/api/v1/keys/nope", headers=h.auth()), 404, "not_found")


async def test_an_expiring_key_cannot_mint_a_key_that_outlives_it(harness: AppHarness) -> None:
    h = harness
    r = await h.client.post(
        "/api/v1/keys", json={"name": "day", "expires_in_days": 1}, headers=h.auth()
    )
    assert r.status_code == 201, r.text
    day = r.json()["key"]
    for body, field in (({}, "expires_at"), ({"expires_in_days": 3650}, "expires_in_days")):
        r = await h.client.post("/api/v1/keys", json={"name": "x", **body}, headers=h.auth(day))
        err = _assert_error(r, 422, "validation_error")
        assert "cannot outlive" in str(err["message"])
        assert err["errors"][0]["field"] == field  # type: ignore[index]
        assert day not in r.text
    r = await h.client.post("/api/v1/keys", json={"name": "free"}, headers=h.auth())
    assert r.status_code == 201 and r.json()["expires_at"] is None  # no limit: no expiry


async def test_roles_are_enforced(harness: AppHarness) -> None:
    h = harness
    _, viewer = await _new_user_key(h, "viewer@example.com", "viewer")
    _assert_error(
        await h.client.post(
            "/api/v1/users", json={"email": "x@example.com"}, headers=h.auth(viewer)
        ),
        403,
        "forbidden",
    )
    _assert_error(await h.client.get("/api/v1/users", headers=h.auth(viewer)), 403)
    _assert_error(
        await h.client.post("/api/v1/teams", json={"name": "t"}, headers=h.auth(viewer)), 403
    )
    r = await h.client.post("/api/v1/keys", json={"name": "mine"}, headers=h.auth(viewer))
    assert r.status_code == 201  # everybody manages their own keys
    me = (await h.client.get("/api/v1/me", headers=h.auth(viewer))).json()
    assert me["user"]["role"] == "viewer"


async def test_role_change_takes_effect_immediately(harness: AppHarness) -> None:
    h = harness
    user_id, key = await _new_user_key(h, "promote@example.com", "viewer")
    assert (await h.client.get("/api/v1/users", headers=h.auth(key))).status_code == 403
    r = await h.client.patch(
        f"/api/v1/users/{user_id}", json={"role": "operator"}, headers=h.auth()
    )
    assert r.status_code == 200 and r.json()["role"] == "operator"
    assert (await h.client.get("/api/v1/users", headers=h.auth(key))).status_code == 200
    await h.client.patch(f"/api/v1/users/{user_id}", json={"is_active": False}, headers=h.auth())
    _assert_error(await h.client.get("/api/v1/me", headers=h.auth(key)), 401, "user_inactive")


async def test_users_and_teams(harness: AppHarness) -> None:
    h = harness
    user_id, key = await _new_user_key(h, "dev@example.com", "developer")
    _assert_error(
        await h.client.post("/api/v1/users", json={"email": "DEV@example.com"}, headers=h.auth()),
        409,
        "conflict",
    )
    users = (await h.client.get("/api/v1/users?limit=1", headers=h.auth())).json()
    assert users["total"] == 2 and len(users["items"]) == 1
    r = await h.client.post(
        "/api/v1/teams", json={"name": "platform", "description": "infra"}, headers=h.auth()
    )
    assert r.status_code == 201, r.text
    team = r.json()
    r = await h.client.post(
        f"/api/v1/teams/{team['id']}/members", json={"user_id": user_id}, headers=h.auth()
    )
    assert r.status_code == 200
    assert [m["email"] for m in r.json()["members"]] == ["dev@example.com"]
    mine = (await h.client.get("/api/v1/teams", headers=h.auth(key))).json()
    assert [t["name"] for t in mine["items"]] == ["platform"]
    me = (await h.client.get("/api/v1/me", headers=h.auth(key))).json()
    assert me["teams"] == [{"id": team["id"], "name": "platform", "role": "member"}]
    r = await h.client.get("/api/v1/teams/platform", headers=h.auth())
    assert r.status_code == 200 and r.json()["members"][0]["user_id"] == user_id
    r = await h.client.delete(f"/api/v1/teams/platform/members/{user_id}", headers=h.auth())
    assert r.status_code == 204
    _assert_error(
        await h.client.post("/api/v1/teams", json={"name": "Bad Name!"}, headers=h.auth()), 422
    )


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("post", "/api/v1/users", {"content": b"{not json"}, 400, "invalid_json"),
        ("post", "/api/v1/users", {"json": {"email": 42}}, 422, "validation_error"),
        ("post", "/api/v1/users", {"json": {"email": "a@b.c", "role": "god"}}, 422, None),
        ("post", "/api/v1/users", {"json": {"email": "a@b.c", "admin": True}}, 422, None),
        ("post", "/api/v1/users", {"json": ["a list"]}, 422, None),
        ("post", "/api/v1/keys", {"json": {"name": "x", "scopes": ["root"]}}, 422, None),
        ("post", "/api/v1/keys", {"json": {"name": "x", "scopes": []}}, 422, None),
        ("post", "/api/v1/keys", {"json": {"name": "", "scopes": ["*"]}}, 422, None),
        (
            "post",
            "/api/v1/keys",
            {"json": {"name": "x", "expires_at": "2030-01-01T00:00:00"}},
            422,
            None,
        ),
        ("get", "/api/v1/users?limit=0", {}, 422, None),
        ("get", "/api/v1/users?limit=abc", {}, 422, None),
        ("get", "/api/v1/nope", {}, 404, "not_found"),
        ("put", "/api/v1/me", {}, 405, "method_not_allowed"),
    ],
)
async def test_bad_input_gets_json_errors(
    harness: AppHarness,
    method: str,
    path: str,
    kwargs: dict[str, object],
    status: int,
    code: str | None,
) -> None:
    headers = {**harness.auth(), "content-type": "application/json"}
    r = await getattr(harness.client, method)(path, headers=headers, **kwargs)
    body = _assert_error(r, status, code)
    if status == 422 and "errors" in body:
        assert all("field" in e and "message" in e for e in body["errors"])  # type: ignore[union-attr]


async def test_validation_errors_name_the_field(harness: AppHarness) -> None:
    r = await harness.client.post(
        "/api/v1/users", json={"email": "a@b.c", "rol": "admin"}, headers=harness.auth()
    )
    body = _assert_error(r, 422, "validation_error")
    assert {"field": "rol", "message": "Extra inputs are not permitted"} in body["errors"]  # type: ignore[operator]


async def test_oversized_bodies_are_refused(harness: AppHarness) -> None:
    settings = harness.app.state.gw.settings  # type: ignore[attr-defined]
    big = b'{"email": "' + b"a" * (settings.max_request_bytes + 10) + b'"}'
    r = await harness.client.post("/api/v1/users", content=big, headers=harness.auth())
    _assert_error(r, 413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: streamed
        for _ in range(settings.max_request_bytes // 65536 + 2):
            yield b"a" * 65536

    r = await harness.client.post("/api/v1/users", content=chunks(), headers=harness.auth())
    _assert_error(r, 413, "payload_too_large")
    # and the gateway is still fine
    assert (await harness.client.get("/api/v1/me", headers=harness.auth())).status_code == 200


async def test_unexpected_errors_become_json_500_with_request_id(harness: AppHarness) -> None:
    app: FastAPI = harness.app  # type: ignore[assignment]

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom with mgw_live_SHOULDNOTLEAK")

    r = await harness.client.get("/boom", headers={"x-request-id": "trace-123"})
    body = _assert_error(r, 500, "internal_error")
    assert body["request_id"] == "trace-123"
    assert "kaboom" not in r.text and "SHOULDNOTLEAK" not in r.text
    assert r.headers["x-request-id"] == "trace-123"
    assert (await harness.client.get("/healthz")).status_code == 200


async def test_request_ids_are_generated_or_sanitised(harness: AppHarness) -> None:
    r = await harness.client.get("/healthz")
    assert len(r.headers["x-request-id"]) == 32
    r = await harness.client.get("/healthz", headers={"x-request-id": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces"


async def test_openapi_and_docs(harness: AppHarness) -> None:
    spec = (await harness.client.get("/openapi.json")).json()
    for path in ("/api/v1/me", "/api/v1/keys", "/api/v1/users", "/api/v1/teams", "/readyz"):
        assert path in spec["paths"]
    assert "401" in spec["paths"]["/api/v1/me"]["get"]["responses"]
    r = await harness.client.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()


async def test_last_used_is_written_in_batches(harness: AppHarness) -> None:
    state: GatewayState = harness.app.state.gw  # type: ignore[attr-defined]
    before = (await harness.client.get("/api/v1/keys", headers=harness.auth())).json()
    assert before["items"][0]["last_used_at"] is None  # not written on the request path
    await state.authenticator.flush_usage()
    after = (await harness.client.get("/api/v1/keys", headers=harness.auth())).json()
    assert after["items"][0]["last_used_at"] is not None


async def test_last_used_is_kept_to_the_second(harness: AppHarness) -> None:
    """A key's use is noted once a second at most (not a clock read per call): uses
    within the second leave the written time alone, a use after it moves it on."""
    state: GatewayState = harness.app.state.gw  # type: ignore[attr-defined]

    async def use_then_read() -> str:
        await harness.client.get("/api/v1/me", headers=harness.auth())
        await state.authenticator.flush_usage()
        r = await harness.client.get("/api/v1/keys", headers=harness.auth())
        return str(r.json()["items"][0]["last_used_at"])

    first = await use_then_read()
    assert first != "None"
    assert await use_then_read() == first  # used again within the second
    await asyncio.sleep(1.1)
    assert await use_then_read() > first
