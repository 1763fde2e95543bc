"""The gateway as an OAuth 2.1 authorization server (issue 18, MCP authorization), on
both databases: registration, the authorization request, sign-in and consent in a
browser (scripted with httpx: cookies, forms, redirects), code + PKCE, resource-bound
tokens, refresh rotation, revocation — and the attacks: forged and replayed state,
codes and refresh tokens, CSRF, open redirects, unregistered redirect URIs.

A real MCP client doing the same over `/mcp` is in test_mcp_oauth.py."""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy import select, update

from gateway.audit.models import AuditEvent
from gateway.auth.housekeeping import prune_expired
from gateway.auth.keys import hash_key
from gateway.auth.models import WebSession
from gateway.auth.oauth.models import OAuthRequest, OAuthToken
from gateway.db import Database, utcnow
from tests.conftest import BOOTSTRAP_KEY, AppHarness, make_settings, running_app

BASE = "http://gw.test"
REDIRECT = "http://127.0.0.1:9/callback"


@dataclass
class Flow:
    """One client's authorization, step by step."""

    client_id: str
    verifier: str
    state: str
    consent_url: str = ""


async def register(client: httpx.AsyncClient, **extra: object) -> str:
    body = {
        "redirect_uris": [REDIRECT],
        "client_name": "Test Agent",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        **extra,
    }
    r = await client.post("/oauth/register", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["client_id"])


async def authorize(client: httpx.AsyncClient, client_id: str, **params: str) -> Flow:
    flow = Flow(client_id, secrets.token_urlsafe(48), secrets.token_urlsafe(16))
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": create_s256_code_challenge(flow.verifier),
        "code_challenge_method": "S256",
        "state": flow.state,
        "resource": f"{BASE}/mcp",
        **params,
    }
    r = await client.get("/oauth/authorize", params=query)
    assert r.status_code == 302, r.text
    flow.consent_url = r.headers["location"]
    assert flow.consent_url.startswith(f"{BASE}/oauth/consent?request=")
    return flow


async def sign_in(client: httpx.AsyncClient, next_url: str, key: str = BOOTSTRAP_KEY) -> None:
    r = await client.get(next_url)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/auth/signin?next=")
    form = {"api_key": key, "next": parse_qs(urlsplit(r.headers["location"]).query)["next"][0]}
    r = await client.post("/auth/signin", data=form)
    assert r.status_code == 303, r.text
    assert "mcpgw_session" in r.cookies and "httponly" in r.headers["set-cookie"].lower()


def consent_form(html: str) -> dict[str, str]:
    fields = dict(re.findall(r'name="(request|csrf_token)" value="([^"]+)"', html))
    assert set(fields) == {"request", "csrf_token"}, html
    return fields


async def approve(client: httpx.AsyncClient, flow: Flow, decision: str = "allow") -> str:
    page = await client.get(flow.consent_url)
    assert page.status_code == 200 and "Test Agent" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    r = await client.post("/oauth/consent", data={**consent_form(page.text), "decision": decision})
    assert r.status_code == 303, r.text
    return r.headers["location"]


def code_of(location: str, flow: Flow) -> str:
    assert location.startswith(REDIRECT + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [flow.state]  # returned unchanged, for the client to check
    return query["code"][0]


async def exchange(client: httpx.AsyncClient, flow: Flow, code: str) -> httpx.Response:
    return await client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": flow.client_id,
            "code_verifier": flow.verifier,
        },
    )


async def tokens_for(client: httpx.AsyncClient, resource: str = f"{BASE}/mcp") -> dict[str, str]:
    client_id = await register(client)
    flow = await authorize(client, client_id, resource=resource)
    if "mcpgw_session" not in client.cookies:
        await sign_in(client, flow.consent_url)
    r = await exchange(client, flow, code_of(await approve(client, flow), flow))
    assert r.status_code == 200, r.text
    body: dict[str, str] = r.json()
    body["client_id"] = client_id
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_metadata_documents(harness: AppHarness) -> None:
    c = harness.client
    server = (await c.get("/.well-known/oauth-authorization-server")).json()
    assert server["issuer"] == BASE
    assert server["authorization_endpoint"] == f"{BASE}/oauth/authorize"
    assert server["registration_endpoint"] == f"{BASE}/oauth/register"
    assert server["code_challenge_methods_supported"] == ["S256"]
    for path in ("/mcp", "/sse", "/mcp/servers/github", "/api/v1"):
        doc = (await c.get(f"/.well-known/oauth-protected-resource{path}")).json()
        assert doc["resource"] == f"{BASE}{path}"
        assert doc["authorization_servers"] == [BASE]
    root = (await c.get("/.well-known/oauth-protected-resource")).json()
    assert root["resource"] == f"{BASE}/mcp"
    missing = await c.get("/.well-known/oauth-protected-resource/etc/passwd")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


async def test_sign_in_consent_code_tokens(harness: AppHarness, database: Database) -> None:
    c = harness.client
    tokens = await tokens_for(c, f"{BASE}/api/v1")
    assert tokens["access_token"].startswith("mgw_at_")
    assert tokens["refresh_token"].startswith("mgw_rt_")
    assert tokens["token_type"] == "Bearer" and int(tokens["expires_in"]) > 0
    c.cookies.clear()  # from here on only the token speaks
    me = await c.get("/api/v1/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["user"]["email"] == "admin@localhost"
    await harness.app.state.audit.flush()  # type: ignore[attr-defined]
    async with database.session() as s:
        rows = (await s.execute(select(AuditEvent))).scalars().all()
    actions = {r.action for r in rows}
    assert {"oauth.client.register", "oauth.authorize", "session.start"} <= actions
    dumped = " ".join(str(vars(r)) for r in rows)
    for secret in (tokens["access_token"], tokens["refresh_token"], BOOTSTRAP_KEY):
        assert secret not in dumped and secret[7:20] not in dumped


async def test_audience_binding(harness: AppHarness) -> None:
    c = harness.client
    tokens = await tokens_for(c, f"{BASE}/mcp")
    c.cookies.clear()
    r = await c.get("/api/v1/me", headers=bearer(tokens["access_token"]))
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_audience"
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert tokens["access_token"] not in r.text


async def test_the_legacy_sse_transport_names_itself(harness: AppHarness) -> None:
    """A client on /sse must find /sse in the metadata its 401 points to (RFC 9728 §3.3:
    the MCP SDK refuses /mcp's), ask for a token for /sse, and use it on /messages/ too."""
    c = harness.client
    r = await c.get("/sse")
    assert r.status_code == 401
    metadata = f"{BASE}/.well-known/oauth-protected-resource/sse"
    assert f'resource_metadata="{metadata}"' in r.headers["www-authenticate"]
    assert (await c.get(metadata)).json()["resource"] == f"{BASE}/sse"
    tokens = await tokens_for(c, f"{BASE}/sse")
    c.cookies.clear()
    # One endpoint, two transports: past authentication on /messages/ (no such session).
    r = await c.post(
        "/messages/", params={"session_id": "0" * 32}, headers=bearer(tokens["access_token"])
    )
    assert r.status_code != 401, r.text
    r = await c.get("/api/v1/me", headers=bearer(tokens["access_token"]))
    assert r.status_code == 401 and r.json()["code"] == "invalid_audience"


async def test_refresh_rotates_and_a_replay_revokes_the_grant(harness: AppHarness) -> None:
    c = harness.client
    first = await tokens_for(c, f"{BASE}/api/v1")
    refresh = {"grant_type": "refresh_token", "client_id": first["client_id"]}
    # At the 2025-03-26 default path, as a client without metadata calls it.
    r = await c.post("/token", data={**refresh, "refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["access_token"] != first["access_token"]
    assert (await c.get("/api/v1/me", headers=bearer(second["access_token"]))).status_code == 200
    # The spent refresh token comes back: someone copied it. The whole grant ends.
    replay = await c.post("/oauth/token", data={**refresh, "refresh_token": first["refresh_token"]})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    c.cookies.clear()
    gone = await c.get("/api/v1/me", headers=bearer(second["access_token"]))
    assert gone.status_code == 401
    again = await c.post("/oauth/token", data={**refresh, "refresh_token": second["refresh_token"]})
    assert again.status_code == 400


async def test_revocation(harness: AppHarness) -> None:
    c = harness.client
    tokens = await tokens_for(c, f"{BASE}/api/v1")
    c.cookies.clear()
    assert (await c.get("/api/v1/me", headers=bearer(tokens["access_token"]))).status_code == 200
    r = await c.post(
        "/oauth/revoke", data={"token": tokens["refresh_token"], "client_id": tokens["client_id"]}
    )
    assert r.status_code == 200, r.text
    # Revoking the refresh token ends the grant, its access token included, at once here.
    r = await c.get("/api/v1/me", headers=bearer(tokens["access_token"]))
    assert r.status_code == 401 and r.json()["code"] == "invalid_token"


async def test_code_replay_and_wrong_verifier(harness: AppHarness) -> None:
    c = harness.client
    client_id = await register(c)
    flow = await authorize(c, client_id)
    await sign_in(c, flow.consent_url)
    code = code_of(await approve(c, flow), flow)
    wrong = Flow(client_id, "x" * 50, flow.state)
    r = await exchange(c, wrong, code)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    good = await exchange(c, flow, code)
    assert good.status_code == 200
    replay = await exchange(c, flow, code)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    c.cookies.clear()
    # The replay revoked what the code had been exchanged for.
    me = await c.get("/api/v1/me", headers=bearer(good.json()["access_token"]))
    assert me.status_code == 401


async def test_denied_consent_goes_back_with_access_denied(harness: AppHarness) -> None:
    c = harness.client
    flow = await authorize(c, await register(c))
    await sign_in(c, flow.consent_url)
    location = await approve(c, flow, decision="deny")
    query = parse_qs(urlsplit(location).query)
    assert query["error"] == ["access_denied"] and query["state"] == [flow.state]
    # Answered once: the request cannot be approved afterwards.
    again = await c.get(flow.consent_url)
    assert again.status_code == 404


async def test_forged_request_csrf_and_cross_site_posts_are_refused(harness: AppHarness) -> None:
    c = harness.client
    flow = await authorize(c, await register(c))
    await sign_in(c, flow.consent_url)
    page = await c.get(flow.consent_url)
    form = consent_form(page.text)
    forged = await c.post("/oauth/consent", data={**form, "request": "forged", "decision": "allow"})
    assert forged.status_code == 404
    no_csrf = await c.post("/oauth/consent", data={"request": form["request"], "decision": "allow"})
    assert no_csrf.status_code == 403
    cross = await c.post(
        "/oauth/consent",
        data={**form, "decision": "allow"},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403 and cross.json()["code"] == "csrf_failed"
    # Cookie-authenticated REST writes need the CSRF header too.
    write = await c.post("/api/v1/keys", json={"name": "from-a-page"})
    assert write.status_code == 403 and write.json()["code"] == "csrf_failed"
    session = (await c.get("/api/v1/auth/session")).json()
    ok = await c.post(
        "/api/v1/keys", json={"name": "portal"}, headers={"X-CSRF-Token": session["csrf_token"]}
    )
    assert ok.status_code == 201, ok.text
    # The untouched request can still be approved: nothing above consumed it.
    r = await c.post("/oauth/consent", data={**form, "decision": "allow"})
    assert r.status_code == 303 and "code=" in r.headers["location"]


async def test_unregistered_redirect_and_unknown_resource(harness: AppHarness) -> None:
    c = harness.client
    client_id = await register(c)
    r = await c.get(
        "/oauth/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": "https://evil.example/steal",
            "code_challenge": create_s256_code_challenge("v" * 50),
            "state": "s",
        },
    )
    assert r.status_code == 400  # shown to the user, never redirected to an unknown place
    assert "evil.example" not in r.headers.get("location", "")
    r = await c.get(
        "/oauth/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "code_challenge": create_s256_code_challenge("v" * 50),
            "state": "s",
            "resource": "https://elsewhere.example/mcp",
        },
    )
    assert r.status_code == 302
    assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == ["invalid_target"]


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example", "/\\evil.example"])
async def test_sign_in_never_redirects_off_site(harness: AppHarness, target: str) -> None:
    r = await harness.client.post("/auth/signin", data={"api_key": BOOTSTRAP_KEY, "next": target})
    assert r.status_code == 303 and r.headers["location"] == "/"


async def test_bad_key_on_the_sign_in_page(harness: AppHarness) -> None:
    r = await harness.client.post("/auth/signin", data={"api_key": "mgw_live_nope", "next": "/"})
    assert r.status_code == 401 and "invalid or revoked API key" in r.text
    assert "mcpgw_session" not in r.cookies


async def test_logout_ends_the_session(harness: AppHarness) -> None:
    c = harness.client
    await c.post("/auth/signin", data={"api_key": BOOTSTRAP_KEY, "next": "/"})
    session = await c.get("/api/v1/auth/session")
    assert session.status_code == 200
    cookie = c.cookies["mcpgw_session"]
    bad = await c.post("/auth/logout", data={"csrf_token": "wrong"})
    assert bad.status_code == 403
    r = await c.post("/auth/logout", data={"csrf_token": session.json()["csrf_token"]})
    assert r.status_code == 303
    c.cookies.set("mcpgw_session", cookie)  # a copy of the cookie kept by someone
    assert (await c.get("/api/v1/me")).status_code == 401
    # A session cookie is no bearer token, and a bearer token no cookie.
    c.cookies.clear()
    assert (await c.get("/api/v1/me", headers=bearer(cookie))).status_code == 401


class DocumentServer:
    """Client ID metadata documents on loopback (plain HTTP: private URLs allowed)."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, object]] = {}
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                found = outer.documents.get(self.path)
                body = json.dumps(found).encode() if found is not None else b"{}"
                self.send_response(200 if found is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def documents() -> Iterator[DocumentServer]:
    found = DocumentServer()
    yield found
    found.server.shutdown()


async def test_client_id_metadata_documents(
    documents: DocumentServer, database: Database, db_url: str, tmp_path: Path
) -> None:
    client_id = f"{documents.url}/agent/client.json"
    documents.documents["/agent/client.json"] = {
        "client_id": client_id,
        "client_name": "Documented Agent",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
    }
    liar = f"{documents.url}/liar.json"
    documents.documents["/liar.json"] = {
        "client_id": "https://other.example/x",
        "redirect_uris": [REDIRECT],
    }
    settings = make_settings(db_url, tmp_path, allow_private_urls=True)
    async with running_app(settings) as gateway:
        c = gateway.client
        metadata = (await c.get("/.well-known/oauth-authorization-server")).json()
        assert metadata["client_id_metadata_document_supported"] is True
        flow = await authorize(c, client_id, resource=f"{BASE}/api/v1")
        await sign_in(c, flow.consent_url)
        page = await c.get(flow.consent_url)
        assert "Documented Agent" in page.text
        r = await c.post("/oauth/consent", data={**consent_form(page.text), "decision": "allow"})
        tokens = await exchange(c, flow, code_of(r.headers["location"], flow))
        assert tokens.status_code == 200, tokens.text
        c.cookies.clear()
        me = await c.get("/api/v1/me", headers=bearer(tokens.json()["access_token"]))
        assert me.status_code == 200
        # A document that names another client is not that client.
        lied = await c.get(
            "/oauth/authorize",
            params={
                "response_type": "code",
                "client_id": liar,
                "redirect_uri": REDIRECT,
                "code_challenge": create_s256_code_challenge("v" * 50),
            },
        )
        assert lied.status_code == 400 and "not found" in lied.text


async def test_client_documents_pass_the_ssrf_guard(
    harness: AppHarness, documents: DocumentServer
) -> None:
    """Without MCPGW_ALLOW_PRIVATE_URLS, a client id pointing at a private address is
    not fetched (the document server is never asked)."""
    documents.documents["/c.json"] = {"client_id": "x", "redirect_uris": [REDIRECT]}
    r = await harness.client.get(
        "/oauth/authorize",
        params={
            "response_type": "code",
            "client_id": f"{documents.url}/c.json",
            "redirect_uri": REDIRECT,
            "code_challenge": create_s256_code_challenge("v" * 50),
        },
    )
    assert r.status_code == 400
    assert documents.hits == 0


async def test_expired_sign_in_rows_are_pruned(harness: AppHarness, database: Database) -> None:
    c = harness.client
    old = await tokens_for(c, f"{BASE}/api/v1")
    await authorize(c, await register(c))  # a request nobody answers
    async with database.session() as s:
        long_ago = utcnow() - timedelta(days=3)
        await s.execute(update(OAuthToken).values(expires_at=long_ago))
        await s.execute(update(OAuthRequest).values(expires_at=long_ago))
        await s.execute(update(WebSession).values(expires_at=long_ago))
    c.cookies.clear()
    fresh = await tokens_for(c, f"{BASE}/api/v1")  # signs in anew: a live session too
    assert await prune_expired(database) >= 4
    async with database.session() as s:
        kept = (await s.scalars(select(OAuthToken.token_hash))).all()
        sessions = (await s.scalars(select(WebSession))).all()
    assert hash_key(fresh["access_token"]) in kept and hash_key(old["access_token"]) not in kept
    assert len(sessions) == 1
