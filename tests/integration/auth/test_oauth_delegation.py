"""Delegating MCP authorization to an external authorization server (issue 18): /mcp's
metadata names the identity provider, the gateway's own server is off, the provider's
resource-bound JWTs open /mcp, and what the provider lacks for MCP clients is said in
words. The provider is the real `oidc-provider` on loopback (tests/support_oidc.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client

from gateway.auth.oauth.delegation import delegation_problems
from gateway.db import Database
from tests.conftest import AppHarness, make_settings, running_app
from tests.support_oidc import OidcConfig, OidcProvider, OidcProviderFactory

RESOURCE = "http://gw.test/mcp"
CALLBACK = "http://127.0.0.1:9/callback"


def config(registration: bool) -> OidcConfig:
    return {
        "clients": [
            {"client_id": "agent", "redirect_uris": [CALLBACK], "preset": "generic"},
        ],
        "users": [{"id": "alice", "email": "alice@corp.example", "name": "Alice"}],
        "resources": [
            {"indicator": RESOURCE, "scope": "mcp:tools", "audience": RESOURCE, "claims": ["email"]}
        ],
        "registration": registration,
    }


@pytest.fixture(scope="module")
def idp(module_oidc_provider_factory: OidcProviderFactory) -> OidcProvider:
    return module_oidc_provider_factory(config(registration=True))


@pytest.fixture
async def gateway(
    idp: OidcProvider, database: Database, db_url: str, tmp_path: Path
) -> AsyncIterator[AppHarness]:
    settings = make_settings(
        db_url,
        tmp_path,
        allow_private_urls=True,
        oauth_authorization_server=idp.issuer,
        jwt_issuer=idp.issuer,
        jwt_audience=RESOURCE,
        jwt_create_users=True,
    )
    async with running_app(settings) as found:
        yield found


def resource_token(idp: OidcProvider) -> str:
    """What an MCP client gets from the provider: a JWT access token for /mcp."""
    client = OAuth2Client(
        "agent",
        None,
        scope="mcp:tools",
        redirect_uri=CALLBACK,
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )
    verifier = generate_token(48)
    url, _ = client.create_authorization_url(
        idp.authorize_url, code_verifier=verifier, resource=RESOURCE
    )
    with httpx.Client() as browser:
        back = idp.sign_in(browser, url, "alice")
    token: dict[str, Any] = client.fetch_token(
        idp.token_url, authorization_response=back, code_verifier=verifier, resource=RESOURCE
    )
    return str(token["access_token"])


async def test_metadata_names_the_provider_and_its_tokens_open_mcp(
    gateway: AppHarness, idp: OidcProvider
) -> None:
    c = gateway.client
    doc = (await c.get("/.well-known/oauth-protected-resource/mcp")).json()
    assert doc["authorization_servers"] == [idp.issuer]
    assert (await c.get("/.well-known/oauth-authorization-server")).status_code == 404
    assert (await c.get("/oauth/authorize")).status_code == 404
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    refused = await c.post("/mcp", json=body, headers={"Host": "127.0.0.1"})
    assert refused.status_code == 401
    assert "resource_metadata=" in refused.headers["www-authenticate"]
    token = resource_token(idp)
    me = await c.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["user"]["email"] == "alice@corp.example"


async def test_what_the_provider_lacks_is_said_in_words(
    idp: OidcProvider,
    module_oidc_provider_factory: OidcProviderFactory,
    database: Database,
    db_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert await delegation_problems(idp.issuer, allow_private=True) == []
    closed = module_oidc_provider_factory(config(registration=False))
    found = await delegation_problems(closed.issuer, allow_private=True)
    assert len(found) == 1 and "no dynamic client registration" in found[0]
    away = await delegation_problems("http://127.0.0.1:9", allow_private=True)
    assert away and "no authorization server metadata" in away[0]
    # Private addresses are refused unless allowed: the check goes through the SSRF guard.
    guarded = await delegation_problems(idp.issuer, allow_private=False)
    assert guarded and "no authorization server metadata" in guarded[0]
    # At start-up the gateway says it in its log, and starts anyway.
    caplog.set_level(logging.WARNING, logger="gateway.auth")
    settings = make_settings(
        db_url,
        tmp_path,
        allow_private_urls=True,
        oauth_authorization_server=closed.issuer,
        jwt_issuer=closed.issuer,
        jwt_audience=RESOURCE,
    )
    async with running_app(settings) as gateway:
        for _ in range(100):
            if "MCP clients cannot register themselves" in caplog.text:
                break
            await asyncio.sleep(0.05)
        assert (await gateway.client.get("/readyz")).status_code == 200
    assert f"MCPGW_OAUTH_AUTHORIZATION_SERVER={closed.issuer}" in caplog.text
    assert "MCP clients cannot register themselves" in caplog.text


def test_delegation_needs_jwt_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="MCPGW_OAUTH_AUTHORIZATION_SERVER needs MCPGW_JWT_ISSUER"):
        make_settings("sqlite://", tmp_path, oauth_authorization_server="https://idp.example")
