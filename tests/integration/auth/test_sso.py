"""Signing in with an identity provider (issue 18), on both databases, against a real
OpenID provider: the npm `oidc-provider` on loopback (tests/support_oidc.py).

GitHub, Google, Microsoft Entra ID and Okta cannot be reached from here: each preset is
exercised against the local provider imitating its claim shapes (and GitHub's user API,
Entra's Graph overage endpoint); what is real is the protocol on both sides — authlib
building the authorization request and exchanging the code, joserfc verifying the ID
token, oidc-provider checking PKCE and redirect URIs. The browser is scripted with
httpx (cookies, forms, redirects)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.auth.models import User
from gateway.db import Database
from tests.conftest import AppHarness, make_settings, running_app
from tests.support_oidc import OidcConfig, OidcProvider, OidcProviderFactory

GW = "http://gw.test"
ENTRA_ADMINS = "0b5a9b1e-8d0c-4c0e-9f6f-2a6a4c1e7d01"
PRESETS = ("corp", "google", "entra", "okta", "github")


def _client(name: str, preset: str) -> dict[str, Any]:
    return {
        "client_id": f"gw-{name}",
        "client_secret": f"gw-{name}-secret-0123456789",
        "redirect_uris": [f"{GW}/auth/callback/{name}"],
        "preset": preset,
    }


CONFIG: OidcConfig = {
    "clients": [
        _client("corp", "generic"),
        _client("google", "google"),
        _client("entra", "entra"),
        _client("okta", "okta"),
        _client("github", "github"),
        _client("strict", "generic"),
        _client("dbcorp", "generic"),
    ],
    "users": [
        {
            "id": "alice",
            "email": "alice@corp.example",
            "name": "Alice Admin",
            "groups": ["mcp-admins", "team:platform", ENTRA_ADMINS],
            "login": "alice-gh",
        },
        {"id": "bob", "email": "bob@other.example", "name": "Bob", "groups": []},
        {"id": "carol", "email": "carol@corp.example", "email_verified": False},
        {
            "id": "dave",
            "email": "dave@corp.example",
            "name": "Dave",
            "groups": [ENTRA_ADMINS],
            "overage": True,  # Entra: too many groups for the token, read from Graph
        },
    ],
    "scopes": ["User.Read"],
}


@pytest.fixture(scope="module")
def idp(module_oidc_provider_factory: OidcProviderFactory) -> OidcProvider:
    return module_oidc_provider_factory(CONFIG)


def providers(idp: OidcProvider) -> list[dict[str, Any]]:
    def entry(name: str, preset: str, **extra: Any) -> dict[str, Any]:
        found = {
            "name": name,
            "preset": preset,
            "client_id": f"gw-{name}",
            "client_secret": f"gw-{name}-secret-0123456789",
            **extra,
        }
        if preset != "github":
            found["issuer"] = idp.issuer  # stands in for accounts.google.com, Entra, Okta
        return found

    return [
        entry("corp", "oidc", group_roles={"mcp-admins": "admin"}),
        entry("google", "google"),
        entry("entra", "entra", group_roles={ENTRA_ADMINS: "admin"}),
        entry("okta", "okta", group_roles={"mcp-admins": "operator"}),
        entry(
            "github",
            "github",
            authorize_url=idp.authorize_url,
            token_url=idp.token_url,
            api_url=f"{idp.issuer}/api",
        ),
        entry("strict", "oidc", allowed_domains=["corp.example"], create_users=True),
    ]


@pytest.fixture
async def gateway(
    idp: OidcProvider, database: Database, db_url: str, tmp_path: Path
) -> AsyncIterator[AppHarness]:
    settings = make_settings(
        db_url, tmp_path, sso_providers=providers(idp), allow_private_urls=True
    )
    async with running_app(settings) as found:
        yield found


async def sign_in(
    gateway: AppHarness, idp: OidcProvider, provider: str, account: str, next_path: str = "/"
) -> httpx.Response:
    """Click "Sign in with <provider>", sign in at the provider, come back."""
    start = await gateway.client.get(f"/auth/login/{provider}", params={"next": next_path})
    assert start.status_code == 302, start.text
    assert "mcpgw_login" in start.cookies
    async with httpx.AsyncClient() as browser_at_idp:
        back = await idp.sign_in_async(browser_at_idp, start.headers["location"], account)
    assert back.startswith(f"{GW}/auth/callback/{provider}?")
    return await gateway.client.get(back.removeprefix(GW))


async def whoami(gateway: AppHarness) -> dict[str, Any]:
    r = await gateway.client.get("/api/v1/auth/session")
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


@pytest.mark.parametrize("provider", PRESETS)
async def test_each_preset_signs_in(gateway: AppHarness, idp: OidcProvider, provider: str) -> None:
    r = await sign_in(gateway, idp, provider, "alice", next_path="/api/v1/me")
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/api/v1/me"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    me = await whoami(gateway)
    assert me["email"] == "alice@corp.example"
    assert me["role"] == {"corp": "admin", "entra": "admin", "okta": "operator"}.get(
        provider, "viewer"
    )
    # The provider list the sign-in page and the portal show.
    listed = (await gateway.client.get("/api/v1/auth/providers")).json()
    assert [p["name"] for p in listed] == [*PRESETS, "strict"]
    assert {p["label"] for p in listed} >= {"GitHub", "Google", "Microsoft", "Okta"}


async def test_groups_map_to_teams_and_roles_follow_the_provider(
    gateway: AppHarness, idp: OidcProvider, database: Database
) -> None:
    auth = gateway.auth()
    team = await gateway.client.post("/api/v1/teams", json={"name": "platform"}, headers=auth)
    assert team.status_code == 201, team.text
    await sign_in(gateway, idp, "google", "alice")  # no role rules: a viewer
    assert (await whoami(gateway))["role"] == "viewer"
    await sign_in(gateway, idp, "corp", "alice")  # mcp-admins → admin, on every sign-in
    assert (await whoami(gateway))["role"] == "admin"
    members = await gateway.client.get(f"/api/v1/teams/{team.json()['id']}", headers=auth)
    assert [m["email"] for m in members.json()["members"]] == ["alice@corp.example"]


async def test_entra_group_overage_is_read_from_graph(
    gateway: AppHarness, idp: OidcProvider
) -> None:
    r = await sign_in(gateway, idp, "entra", "dave")
    assert r.status_code == 303, r.text
    assert (await whoami(gateway))["role"] == "admin"


async def test_domain_restriction_and_unverified_email(
    gateway: AppHarness, idp: OidcProvider, database: Database
) -> None:
    r = await sign_in(gateway, idp, "strict", "bob")
    assert r.status_code == 403
    assert "other.example may not sign in here" in r.text
    assert "mcpgw_session" not in r.cookies
    r = await sign_in(gateway, idp, "corp", "carol")
    assert r.status_code == 403 and "not verified" in r.text
    async with database.session() as s:
        emails = set((await s.scalars(select(User.email))).all())
    assert not {"bob@other.example", "carol@corp.example"} & emails


async def test_new_users_can_wait_for_approval(
    idp: OidcProvider, database: Database, db_url: str, tmp_path: Path
) -> None:
    listed = providers(idp)
    listed[0]["approve_new_users"] = True
    settings = make_settings(db_url, tmp_path, sso_providers=listed, allow_private_urls=True)
    async with running_app(settings) as gateway:
        r = await sign_in(gateway, idp, "corp", "bob")
        assert r.status_code == 403 and "waiting for an admin" in r.text
        users = (await gateway.client.get("/api/v1/users", headers=gateway.auth())).json()
        bob = next(u for u in users["items"] if u["email"] == "bob@other.example")
        assert bob["is_active"] is False
        r = await gateway.client.patch(
            f"/api/v1/users/{bob['id']}", json={"is_active": True}, headers=gateway.auth()
        )
        assert r.status_code == 200, r.text
        assert (await sign_in(gateway, idp, "corp", "bob")).status_code == 303


async def test_state_replay_forgery_and_another_browser_are_refused(
    gateway: AppHarness, idp: OidcProvider
) -> None:
    start = await gateway.client.get("/auth/login/corp")
    async with httpx.AsyncClient() as browser_at_idp:
        back = await idp.sign_in_async(browser_at_idp, start.headers["location"], "alice")
    callback = back.removeprefix(GW)
    query = parse_qs(urlsplit(callback).query)
    # Another browser (no login cookie) presenting the callback: refused.
    async with httpx.AsyncClient(transport=gateway.client._transport, base_url=GW) as other:
        stolen = await other.get(callback)
    assert stolen.status_code == 403 and "start again" in stolen.text
    forged = dict(query, state=["forged-state"])
    r = await gateway.client.get(
        "/auth/callback/corp?" + urlencode({k: v[0] for k, v in forged.items()})
    )
    assert r.status_code == 403
    assert (await gateway.client.get(callback)).status_code == 303  # the real one, once
    replay = await gateway.client.get(callback)
    assert replay.status_code == 403 and "already used" in replay.text
    # A callback for another provider with this state: refused as well.
    other_provider = await gateway.client.get(callback.replace("/corp?", "/okta?"))
    assert other_provider.status_code == 403


async def test_open_redirects_and_errors_from_the_provider(
    gateway: AppHarness, idp: OidcProvider
) -> None:
    r = await sign_in(gateway, idp, "corp", "alice", next_path="//evil.example/x")
    assert r.status_code == 303 and r.headers["location"] == "/"
    start = await gateway.client.get("/auth/login/corp")
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    denied = await gateway.client.get(
        "/auth/callback/corp",
        params={"error": "access_denied", "error_description": "the user said no", "state": state},
    )
    assert denied.status_code == 403 and "the user said no" in denied.text
    unknown = await gateway.client.get("/auth/login/nobody")
    assert unknown.status_code == 404 and "no sign-in provider" in unknown.text


async def test_logout_and_cross_site_writes(gateway: AppHarness, idp: OidcProvider) -> None:
    await sign_in(gateway, idp, "corp", "alice")
    session = await whoami(gateway)
    cross = await gateway.client.post(
        "/api/v1/keys",
        json={"name": "x"},
        headers={"X-CSRF-Token": session["csrf_token"], "Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403 and cross.json()["code"] == "csrf_failed"
    r = await gateway.client.delete(
        "/api/v1/auth/session", headers={"X-CSRF-Token": session["csrf_token"]}
    )
    assert r.status_code == 204
    assert (await gateway.client.get("/api/v1/auth/session")).status_code == 401


async def test_nothing_of_a_token_in_logs_or_audit(
    gateway: AppHarness,
    idp: OidcProvider,
    database: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    start = await gateway.client.get("/auth/login/corp")
    async with httpx.AsyncClient() as browser_at_idp:
        back = await idp.sign_in_async(browser_at_idp, start.headers["location"], "alice")
    code = parse_qs(urlsplit(back).query)["code"][0]
    r = await gateway.client.get(back.removeprefix(GW))
    assert r.status_code == 303
    session_cookie = gateway.client.cookies["mcpgw_session"]
    await gateway.app.state.audit.flush()  # type: ignore[attr-defined]
    async with database.session() as s:
        rows = (await s.scalars(select(AuditEvent))).all()
    assert any(r.action == "session.start" for r in rows)
    # The gateway's own log lines, with their structured fields (the test's httpx
    # client logs the URLs it fetches; that is the browser, not the gateway).
    logged = " ".join(
        f"{r.getMessage()} {vars(r)}" for r in caplog.records if r.name.startswith("gateway")
    )
    dumped = " ".join(str(vars(r)) for r in rows) + logged
    for secret in (code, session_cookie, "gw-corp-secret"):
        assert secret not in dumped


async def test_admins_manage_providers_in_the_database(
    gateway: AppHarness, idp: OidcProvider, database: Database
) -> None:
    c, admin = gateway.client, gateway.auth()
    body = {
        "name": "dbcorp",
        "preset": "oidc",
        "issuer": idp.issuer,
        "client_id": "gw-dbcorp",
        "client_secret": "gw-dbcorp-secret-0123456789",
    }
    created = await c.post("/api/v1/auth/providers", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["config"]["has_client_secret"] is True
    assert "gw-dbcorp-secret" not in created.text
    listed = (await c.get("/api/v1/auth/providers")).json()
    assert listed[-1]["name"] == "dbcorp"
    assert (await sign_in(gateway, idp, "dbcorp", "alice")).status_code == 303
    # Changed without a secret: the stored one stays (the next sign-in still works).
    changed = await c.put(
        "/api/v1/auth/providers/dbcorp",
        json={**{k: v for k, v in body.items() if k != "client_secret"}, "label": "Corp DB"},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert (await sign_in(gateway, idp, "dbcorp", "alice")).status_code == 303
    detail = (await c.get("/api/v1/auth/providers/dbcorp", headers=admin)).json()
    assert detail["source"] == "database" and detail["config"]["label"] == "Corp DB"
    # Settings' providers are read-only here; bad input is named.
    clash = await c.post("/api/v1/auth/providers", json={**body, "name": "corp"}, headers=admin)
    assert clash.status_code == 409 and "MCPGW_SSO_PROVIDERS" in clash.json()["message"]
    bad = await c.post(
        "/api/v1/auth/providers",
        json={**body, "name": "x", "preset": "okta", "issuer": None},
        headers=admin,
    )
    assert bad.status_code == 422 and "needs an issuer" in bad.text
    removed = await c.delete("/api/v1/auth/providers/dbcorp", headers=admin)
    assert removed.status_code == 204
    assert (await c.get("/auth/login/dbcorp")).status_code == 404
    await gateway.app.state.audit.flush()  # type: ignore[attr-defined]
    async with database.session() as s:
        rows = (await s.scalars(select(AuditEvent).order_by(AuditEvent.pos))).all()
        raw = await s.execute(select(AuditEvent.detail))
    actions = [r.action for r in rows if r.action.startswith("sso_provider.")]
    assert actions == ["sso_provider.create", "sso_provider.update", "sso_provider.delete"]
    assert all("gw-dbcorp-secret" not in str(d) for (d,) in raw.all())


async def test_only_admins_manage_providers(gateway: AppHarness, idp: OidcProvider) -> None:
    await sign_in(gateway, idp, "google", "bob")  # a viewer, signed in
    session = await whoami(gateway)
    r = await gateway.client.post(
        "/api/v1/auth/providers",
        json={"name": "mine", "preset": "github", "client_id": "x"},
        headers={"X-CSRF-Token": session["csrf_token"]},
    )
    assert r.status_code == 403


async def test_a_code_from_another_sign_in_is_refused(
    gateway: AppHarness, idp: OidcProvider
) -> None:
    """Code injection: the provider's answer to sign-in A presented with the state of
    sign-in B (same browser). B's PKCE verifier and nonce do not match A's code and ID
    token, so nothing signs in."""
    first = await gateway.client.get("/auth/login/corp")
    second = await gateway.client.get("/auth/login/corp")  # the browser's cookie is B's
    async with httpx.AsyncClient() as browser_at_idp:
        back = await idp.sign_in_async(browser_at_idp, first.headers["location"], "alice")
    code = parse_qs(urlsplit(back).query)["code"][0]
    state_b = parse_qs(urlsplit(second.headers["location"]).query)["state"][0]
    r = await gateway.client.get(
        "/auth/callback/corp", params={"code": code, "state": state_b, "iss": idp.issuer}
    )
    assert r.status_code == 403 and "could not complete the sign-in" in r.text
    assert "mcpgw_session" not in r.cookies


async def test_the_sign_in_page_offers_every_provider(gateway: AppHarness) -> None:
    page = await gateway.client.get("/auth/signin", params={"next": "/oauth/consent?request=a&b"})
    assert page.status_code == 200 and page.headers["x-frame-options"] == "DENY"
    for name, label in (("github", "GitHub"), ("entra", "Microsoft"), ("corp", "single sign-on")):
        link = f'href="/auth/login/{name}?next=/oauth/consent%3Frequest%3Da%26b"'
        assert link in page.text and f"Sign in with {label}" in page.text
    assert 'name="api_key"' in page.text
