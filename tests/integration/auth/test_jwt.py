"""External bearer JWTs (issue 18, first part): accepted from the configured issuer,
mapped to a user, refused with a 401 that says why for every way a token can be wrong.

The issuer here is a loopback HTTP server publishing an OpenID discovery document and a
JWKS, and the test signs tokens itself with joserfc: what is under test is the gateway's
verification (the sign-in part of the issue brings the real `oidc-provider`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.auth import jwt as gateway_jwt
from gateway.auth.models import User
from gateway.db import Database
from tests.conftest import AppHarness, make_settings, running_app

AUDIENCE = "mcpgw-test"
SHARED = "s" * 40


class Issuer:
    """A loopback issuer: discovery document and JWKS, keys swappable (rotation)."""

    def __init__(self) -> None:
        self.keys = [RSAKey.generate_key(2048, parameters={"kid": "k1"})]
        self.up = True
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not issuer.up:
                    self.send_error(503)
                    return
                if self.path == "/.well-known/openid-configuration":
                    body: Any = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
                elif self.path == "/jwks":
                    body = {"keys": [k.as_dict(private=False) for k in issuer.keys]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, key: Any = None, alg: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.url, "aud": AUDIENCE, "exp": now + 300, "iat": now}
        payload.update({"email": "alice@example.com", "roles": ["developer"], **claims})
        payload = {k: v for k, v in payload.items() if v is not None}
        key = key or self.keys[0]
        header = {"alg": alg, **({"kid": key.kid} if getattr(key, "kid", None) else {})}
        return jwt.encode(header, payload, key, algorithms=[alg])


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    found = Issuer()
    yield found
    found.server.shutdown()


@pytest.fixture
async def gateway(
    issuer: Issuer, database: Database, db_url: str, tmp_path: Path
) -> AsyncIterator[AppHarness]:
    settings = make_settings(
        db_url,
        tmp_path,
        jwt_issuer=issuer.url,
        jwt_audience=AUDIENCE,
        jwt_shared_secret=SHARED,
        jwt_create_users=True,
        jwt_allowed_domains=["example.com"],
        allow_private_urls=True,  # the issuer is on loopback
    )
    async with running_app(settings) as found:
        yield found


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_token_from_the_issuer_signs_in_its_user_created_on_first_use(
    gateway: AppHarness, issuer: Issuer, database: Database
) -> None:
    token = issuer.token()
    for _ in range(2):  # the second from the principal cache
        r = await gateway.client.get("/api/v1/me", headers=_bearer(token))
        assert r.status_code == 200, r.text
        assert (r.json()["user"]["email"], r.json()["user"]["role"]) == (
            "alice@example.com",
            "developer",
        )
    # HS256 with the shared secret works too.
    r = await gateway.client.get(
        "/api/v1/me", headers=_bearer(issuer.token(OctKey.import_key(SHARED), alg="HS256"))
    )
    assert r.status_code == 200, r.text
    # An email the issuer has not verified names nobody, even an existing user.
    r = await gateway.client.get("/api/v1/me", headers=_bearer(issuer.token(email_verified=False)))
    assert r.status_code == 401 and r.json()["code"] == "unknown_user"
    # Another domain is not created.
    r = await gateway.client.get(
        "/api/v1/me", headers=_bearer(issuer.token(email="bob@elsewhere.org"))
    )
    assert r.status_code == 401 and r.json()["code"] == "unknown_user"
    async with database.session() as session:
        users = (await session.scalars(select(User.email))).all()
    assert "alice@example.com" in users and "bob@elsewhere.org" not in users


async def test_a_rotated_key_is_fetched_when_a_token_names_it(
    gateway: AppHarness, issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await gateway.client.get("/api/v1/me", headers=_bearer(issuer.token()))).is_success
    monkeypatch.setattr(gateway_jwt, "_MIN_REFRESH_SECONDS", 0.0)
    issuer.keys = [ECKey.generate_key("P-256", parameters={"kid": "k2"})]  # and ES256
    token = issuer.token(alg="ES256", name="Alice")
    r = await gateway.client.get("/api/v1/me", headers=_bearer(token))
    assert r.status_code == 200, r.text


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def _forged(issuer: Issuer, alg: str, secret: bytes | None = None) -> str:
    """What an attacker crafts by hand: ``alg: none``, or HS256 keyed with the issuer's
    public key (no library signs that: joserfc refuses such a key)."""
    claims = {"iss": issuer.url, "aud": AUDIENCE, "exp": int(time.time()) + 300}
    claims["email"] = "alice@example.com"
    head = _b64(json.dumps({"alg": alg, "kid": "k1"}).encode())
    signing_input = f"{head}.{_b64(json.dumps(claims).encode())}"
    if secret is None:
        return f"{signing_input}."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


async def test_every_bad_token_gets_a_401_that_says_why_and_echoes_nothing(
    gateway: AppHarness, issuer: Issuer, database: Database
) -> None:
    now = int(time.time())
    public_pem = issuer.keys[0].as_pem(private=False)
    stranger = RSAKey.generate_key(2048, parameters={"kid": "stranger"})
    cases = {
        "token_expired": issuer.token(exp=now - 600),
        "token_not_yet_valid": issuer.token(nbf=now + 600),
        "invalid_audience": issuer.token(aud="someone-else"),
        "invalid_issuer": issuer.token(iss="https://evil.example"),
        "invalid_algorithm": _forged(issuer, "none"),
        # HS/RS confusion: HS256 "signed" with the issuer's public key as the secret
        "invalid_signature": _forged(issuer, "HS256", public_pem),
        "unknown_key": issuer.token(stranger),
        "invalid_token": "eyJhbGciIFJTMjU2.e30.AAAA",  # a header that is not JSON
    }
    for code, token in cases.items():
        for path in ("/api/v1/me", "/mcp"):
            r = await (
                gateway.client.get(path, headers=_bearer(token))
                if path != "/mcp"
                else gateway.client.post(
                    path,
                    headers=_bearer(token),
                    json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                )
            )
            assert r.status_code == 401, (code, path, r.text)
            assert r.json()["code"] == code, (code, path, r.text)
            challenge = r.headers["www-authenticate"]
            assert challenge.startswith("Bearer ")
            assert 'error="invalid_token", error_description="' in challenge
            if path == "/mcp":  # where an MCP client learns how to get a token (RFC 9728)
                metadata = "http://gw.test/.well-known/oauth-protected-resource/mcp"
                assert f'resource_metadata="{metadata}"' in challenge
            payload = token.split(".")[1]
            assert payload not in r.text and payload not in challenge
    await gateway.app.state.audit.flush()  # type: ignore[attr-defined]
    async with database.session() as session:
        rows = (await session.scalars(select(AuditEvent))).all()
    failures = [r for r in rows if r.action == "auth.failure"]
    assert {r.error_code for r in failures} >= set(cases) - {"invalid_token"}
    assert all(r.auth_method == "jwt" and r.actor_key_prefix is None for r in failures)
    stored = json.dumps(
        [[getattr(r, c.name) for c in AuditEvent.__table__.columns] for r in rows], default=str
    )
    payloads = [t.split(".")[1] for t in cases.values()]
    # ("e30", the empty object's, is short enough to turn up in any hash)
    assert not any(p in stored for p in payloads if len(p) > 20)


async def test_an_issuer_that_cannot_be_reached_gives_a_401_not_a_crash(
    gateway: AppHarness, issuer: Issuer
) -> None:
    issuer.up = False
    r = await gateway.client.get("/api/v1/me", headers=_bearer(issuer.token()))
    assert r.status_code == 401 and r.json()["code"] == "issuer_keys_unavailable"
    issuer.up = True
    # API keys are unaffected
    assert (await gateway.client.get("/api/v1/me", headers=gateway.auth())).is_success
