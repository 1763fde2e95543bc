"""Per-user credentials for backends (issue 18's token vault), on both databases, with
real components: an OpenID provider (`oidc-provider` on loopback, tests/support_oidc.py)
issuing JWT access tokens for a resource, and an MCP server that accepts only those
(tests/fixtures/jwt_backend.py: joserfc checks signature, issuer and audience; `whoami`
says whose token a call carried). Two users connect with their own accounts; every
entry point (REST, the /mcp SDK path, the fast path, EXECUTE_TOOL) must use the
caller's own token, and a caller without one is told how to connect. The browser is
scripted with httpx."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.db import Database
from tests.conftest import AppHarness, make_settings, running_app
from tests.support import free_port, spawn_http, wait_for
from tests.support_mcp import modern_call
from tests.support_oidc import OidcProvider, OidcProviderFactory

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
GW = "http://gw.test"
CLIENT, CLIENT_SECRET = "gw-vault", "gw-vault-secret-0123456789"
TOKEN_TTL = 8  # seconds: a refresh must happen while a test watches
CONNECT_HINT = "POST /api/v1/connections/vault"


@pytest.fixture(scope="module")
def backend_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def idp(module_oidc_provider_factory: OidcProviderFactory, backend_port: int) -> OidcProvider:
    return module_oidc_provider_factory(
        {
            "clients": [
                {
                    "client_id": CLIENT,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uris": [f"{GW}/auth/connections/callback"],
                }
            ],
            "users": [
                {"id": "alice", "email": "alice@corp.example"},
                {"id": "bob", "email": "bob@corp.example"},
            ],
            "resources": [
                {
                    "indicator": f"http://127.0.0.1:{backend_port}/mcp",
                    "scope": "mcp:tools",
                    "claims": ["email"],
                    "access_token_ttl": TOKEN_TTL,
                }
            ],
        }
    )


@pytest.fixture(scope="module")
def jwt_backend(idp: OidcProvider, backend_port: int) -> Iterator[str]:
    script = FIXTURES / "jwt_backend.py"
    proc = spawn_http([sys.executable, str(script), str(backend_port), idp.issuer], backend_port)
    yield f"http://127.0.0.1:{backend_port}/mcp"
    proc.kill()
    proc.wait()


@pytest.fixture
async def gateway(
    jwt_backend: str, database: Database, db_url: str, tmp_path: Path
) -> AsyncIterator[AppHarness]:
    settings = make_settings(
        db_url,
        tmp_path,
        allow_private_urls=True,
        connections_refresh_interval_seconds=0.5,
        connections_max_refresh_failures=2,
        mcp_allowed_hosts=["gw.test"],
    )
    async with running_app(settings) as found:
        r = await found.client.post(
            "/api/v1/servers",
            json={
                "name": "vault",
                "type": "remote",
                "config": {
                    "url": jwt_backend,
                    # No endpoints: discovered from the backend's RFC 9728 metadata.
                    "credentials": {
                        "kind": "oauth",
                        "client_id": CLIENT,
                        "client_secret": CLIENT_SECRET,
                        "scopes": ["mcp:tools"],
                    },
                },
            },
            headers=found.auth(),
        )
        assert r.status_code == 201, r.text
        assert CLIENT_SECRET not in r.text  # sealed, never shown
        yield found


async def user_key(h: AppHarness, email: str) -> tuple[str, str]:
    r = await h.client.post(
        "/api/v1/users", json={"email": email, "role": "developer"}, headers=h.auth()
    )
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    r = await h.client.post(
        "/api/v1/keys", json={"name": "k", "user_id": user_id}, headers=h.auth()
    )
    assert r.status_code == 201, r.text
    return user_id, r.json()["key"]


async def connect(h: AppHarness, idp: OidcProvider, key: str, account: str) -> httpx.Response:
    """Start the connection with the user's key, sign in at the provider as ``account``
    in a fresh browser, and bring the browser back to the gateway's callback."""
    started = await h.client.post("/api/v1/connections/vault", headers=auth(key))
    assert started.status_code == 201, started.text
    url = started.json()["authorization_url"]
    assert "code_challenge_method=S256" in url and "resource=" in url
    async with httpx.AsyncClient() as browser:
        back = await idp.sign_in_async(browser, url, account)
    assert back.startswith(f"{GW}/auth/connections/callback?")
    done = await h.client.get(back.removeprefix(GW))
    # The server's tools are read through the first connected user's session (the
    # fast path serves only listed tools).
    servers = h.app.state.servers  # type: ignore[attr-defined]
    await wait_for(lambda: servers.catalogs.get("vault") and servers.catalogs["vault"].tools)
    return done


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def call_four_ways(
    h: AppHarness, key: str, *, connected: bool = True
) -> dict[str, dict[str, Any]]:
    """``vault__whoami`` through REST, the fast path, the SDK path and EXECUTE_TOOL:
    each result (``content``, ``isError``) by path. ``connected``: the fast path serves
    the plain call (without a connection, the SDK path answers the refusal)."""
    rest = await h.client.post(
        "/api/v1/tools/execute", json={"tool": "vault__whoami", "arguments": {}}, headers=auth(key)
    )
    assert rest.status_code == 200, rest.text
    out = {"rest": rest.json()}
    calls = {
        "direct": ("vault__whoami", {}),
        "sdk": ("vault__whoami", None),  # `arguments: null`: the fast path leaves it
        "execute_tool": ("EXECUTE_TOOL", {"tool": "vault__whoami"}),
    }
    for path, (name, arguments) in calls.items():
        expected = connected and path == "direct"
        body, headers = modern_call(name, arguments, key=key)
        r = await h.client.post("/mcp", json=body, headers=headers)
        if expected and r.headers.get("mcpgw-route") != "direct":
            # A refresh landed since the REST call: the refreshed token's session is new
            # and its first call takes the SDK path, which starts it. Once started, the
            # fast path serves it (a refresh every few seconds cannot land twice here).
            r = await h.client.post("/mcp", json=body, headers=headers)
        assert r.status_code == 200, r.text
        out[path] = r.json()["result"]
        direct = r.headers.get("mcpgw-route") == "direct"
        assert direct == expected, path
    return out


def who(result: dict[str, Any]) -> dict[str, Any]:
    assert result["isError"] is False, result
    found: dict[str, Any] = json.loads(result["content"][0]["text"])
    return found


def refusal(result: dict[str, Any]) -> str:
    assert result["isError"] is True, result
    text: str = result["content"][0]["text"]
    return text


async def test_two_users_two_tokens_no_crossing(
    gateway: AppHarness, idp: OidcProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alice_id, alice = await user_key(gateway, "alice@corp.example")
    bob_id, bob = await user_key(gateway, "bob@corp.example")

    # Not connected yet: every path answers a tool error that says how to connect.
    for path, result in (await call_four_ways(gateway, alice, connected=False)).items():
        text = refusal(result)
        assert CONNECT_HINT in text and "/auth/connections/start/vault" in text, path

    r = await connect(gateway, idp, alice, "alice")
    assert r.status_code == 200 and "connected to vault" in r.text, r.text
    for path, result in (await call_four_ways(gateway, alice)).items():
        assert who(result)["sub"] == "alice", path

    # Bob has no connection: he must not ride on Alice's session, on any path.
    for path, result in (await call_four_ways(gateway, bob, connected=False)).items():
        assert CONNECT_HINT in refusal(result), path
        assert "alice" not in json.dumps(result), path

    r = await connect(gateway, idp, bob, "bob")
    assert r.status_code == 200, r.text
    for _ in range(2):  # interleaved: each call still carries its caller's token
        for key, sub, email in (
            (alice, "alice", "alice@corp.example"),
            (bob, "bob", "bob@corp.example"),
        ):
            for path, result in (await call_four_ways(gateway, key)).items():
                assert (who(result)["sub"], who(result)["email"]) == (sub, email), path

    # Two backend sessions, one per (server, connection), each with its own token.
    state = gateway.app.state.gw  # type: ignore[attr-defined]
    vault = state.connections.vault
    tokens = {uid: vault.get("vault", uid).headers["Authorization"] for uid in (alice_id, bob_id)}
    assert tokens[alice_id] != tokens[bob_id]
    sessions = state.servers.pool.get("vault")._sessions
    assert len(sessions) == 2
    held = {c: r.spec.secret_headers["Authorization"] for c, (_, r) in sessions.items()}
    assert set(held.values()) == set(tokens.values())

    # Crossing attempts through the API: Bob sees only his connection, cannot list or
    # delete Alice's, and cannot replay her (spent) callback.
    mine = (await gateway.client.get("/api/v1/connections", headers=auth(bob))).json()
    assert [(c["server"], c["email"], c["status"]) for c in mine] == [
        ("vault", "bob@corp.example", "active")
    ]
    for r in (
        await gateway.client.get("/api/v1/connections?all=true", headers=auth(bob)),
        await gateway.client.get(f"/api/v1/connections?user_id={alice_id}", headers=auth(bob)),
        await gateway.client.delete(
            f"/api/v1/connections/vault?user_id={alice_id}", headers=auth(bob)
        ),
    ):
        assert r.status_code == 403, r.text
    everyone = await gateway.client.get("/api/v1/connections?all=true", headers=gateway.auth())
    assert {c["email"] for c in everyone.json()} == {"alice@corp.example", "bob@corp.example"}

    # Bob disconnects: his next call is refused again; Alice's still works.
    r = await gateway.client.delete("/api/v1/connections/vault", headers=auth(bob))
    assert r.status_code == 204
    assert CONNECT_HINT in refusal((await call_four_ways(gateway, bob, connected=False))["direct"])
    assert who((await call_four_ways(gateway, alice))["direct"])["sub"] == "alice"

    # Nothing of a token in the logs or the audit trail.
    await state.audit.flush()
    async with state.db.session() as session:
        rows = (await session.scalars(select(AuditEvent))).all()
    trail = json.dumps(
        [{c.name: str(getattr(r, c.name)) for c in r.__table__.columns} for r in rows]
    )
    actions = {r.action for r in rows}
    assert {"connection.create", "connection.delete"} <= actions
    for token in tokens.values():
        bare = token.removeprefix("Bearer ")
        assert bare not in trail and bare not in caplog.text


async def test_the_callback_refuses_forged_replayed_and_foreign_states(
    gateway: AppHarness, idp: OidcProvider
) -> None:
    _, alice = await user_key(gateway, "alice@corp.example")
    _, bob = await user_key(gateway, "bob@corp.example")
    forged = await gateway.client.get("/auth/connections/callback?state=forged&code=x")
    assert forged.status_code == 403 and "invalid, expired or already used" in forged.text

    started = await gateway.client.post("/api/v1/connections/vault", headers=auth(alice))
    async with httpx.AsyncClient() as browser:
        back = await idp.sign_in_async(browser, started.json()["authorization_url"], "alice")
    # Bob's browser, signed in to the gateway as Bob, cannot take Alice's callback.
    transport = httpx.ASGITransport(app=gateway.app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=GW) as bobs_browser:
        r = await bobs_browser.post("/auth/signin", data={"api_key": bob, "next": "/"})
        assert r.status_code == 303
        r = await bobs_browser.get(back.removeprefix(GW))
        assert r.status_code == 403 and "another user" in r.text
    # The state was spent by that attempt: single use, even for Alice now.
    r = await gateway.client.get(back.removeprefix(GW))
    assert r.status_code == 403 and "already used" in r.text
    mine = (await gateway.client.get("/api/v1/connections", headers=auth(alice))).json()
    assert mine == []


async def test_refresh_before_expiry_and_a_revoked_grant_breaks_the_connection(
    gateway: AppHarness, idp: OidcProvider
) -> None:
    _, alice = await user_key(gateway, "alice@corp.example")
    assert (await connect(gateway, idp, alice, "alice")).status_code == 200
    first = who((await call_four_ways(gateway, alice))["direct"])

    async def refreshed() -> dict[str, Any] | None:
        result = (await call_four_ways(gateway, alice))["direct"]
        now = who(result)
        return now if now["jti"] != first["jti"] else None

    second = await wait_for(refreshed, timeout=TOKEN_TTL + 5, interval=0.5, what="a refresh")
    assert second["sub"] == "alice"
    assert second["now"] < first["exp"]  # the new token was in use before the old expired
    listed = (await gateway.client.get("/api/v1/connections", headers=auth(alice))).json()[0]
    assert listed["status"] in ("active", "expiring") and listed["refreshed_at"]
    # Past the first token's expiry, calls still work (on the refreshed token).
    await wait_for(lambda: time.time() > first["exp"] + 1, timeout=TOKEN_TTL + 5, what="expiry")
    for path, result in (await call_four_ways(gateway, alice)).items():
        assert who(result)["sub"] == "alice", path

    # Alice removes the app at the provider: the next refresh gets invalid_grant; after
    # two in a row the connection is broken and her next call says how to reconnect.
    assert idp.revoke_grants("alice")

    async def broken() -> dict[str, Any] | None:
        r = await gateway.client.get("/api/v1/connections", headers=auth(alice))
        found: dict[str, Any] = r.json()[0]
        return found if found["status"] == "broken" else None

    listed = await wait_for(broken, timeout=TOKEN_TTL + 10, interval=0.25, what="broken")
    assert "invalid_grant" in listed["last_error"] and listed["failures"] == 2
    for path, result in (await call_four_ways(gateway, alice, connected=False)).items():
        text = refusal(result)
        assert "broken" in text and "Reconnect" in text and CONNECT_HINT in text, path
    state = gateway.app.state.gw  # type: ignore[attr-defined]
    await state.audit.flush()
    async with state.db.session() as session:
        actions = set((await session.scalars(select(AuditEvent.action))).all())
    assert "connection.broken" in actions
    # Reconnecting mends it.
    assert (await connect(gateway, idp, alice, "alice")).status_code == 200
    assert who((await call_four_ways(gateway, alice))["sdk"])["sub"] == "alice"


async def test_a_signed_in_browser_connects_from_the_gateway(
    gateway: AppHarness, idp: OidcProvider
) -> None:
    """The URL a refusal names: a browser signed in to the gateway goes from there to the
    provider and back; one that is not signed in is sent to sign in first."""
    _, alice = await user_key(gateway, "alice@corp.example")
    transport = httpx.ASGITransport(app=gateway.app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=GW) as browser:
        r = await browser.get("/auth/connections/start/vault")
        assert r.status_code == 303
        assert r.headers["location"].startswith("/auth/signin?next=%2Fauth%2Fconnections")
        assert (await browser.post("/auth/signin", data={"api_key": alice})).status_code == 303
        r = await browser.get("/auth/connections/start/vault")
        assert r.status_code == 302 and r.headers["location"].startswith(idp.authorize_url)
        async with httpx.AsyncClient() as at_idp:
            back = await idp.sign_in_async(at_idp, r.headers["location"], "alice")
        r = await browser.get(back.removeprefix(GW))
        assert r.status_code == 200 and "connected to vault" in r.text
    r = await gateway.client.post(
        "/api/v1/tools/execute", json={"tool": "vault__whoami"}, headers=auth(alice)
    )
    assert who(r.json())["sub"] == "alice"
