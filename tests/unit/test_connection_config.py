"""A server's `credentials` (per-user credentials for backends): what is accepted, what
is refused and how the refusal reads; the OAuth client secret never stays in config."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import InvalidInput
from gateway.servers.connections.oauth import well_known
from gateway.servers.connections.schemas import per_user_kind, take_client_secret
from gateway.servers.connections.vault import credential_headers
from gateway.servers.schemas import parse_config

URL = "https://mcp.example/v1/mcp"


def remote(credentials: dict[str, Any]) -> dict[str, Any]:
    return parse_config("remote", {"url": URL, "credentials": credentials}).model_dump(
        exclude_none=True
    )


def test_oauth_with_discovery_and_with_endpoints() -> None:
    found = remote({"kind": "oauth", "client_id": "gw", "scopes": ["repo", "read:org"]})
    assert found["credentials"] == {
        "kind": "oauth",
        "client_id": "gw",
        "scopes": ["repo", "read:org"],
    }
    given = remote(
        {
            "kind": "oauth",
            "client_id": "gw",
            "client_secret": "s3cret",
            "authorization_endpoint": "https://idp.example/authorize",
            "token_endpoint": "https://idp.example/token",
            "resource": "https://mcp.example/",
        }
    )
    config, secret = take_client_secret(given)
    assert secret == "s3cret" and "client_secret" not in config["credentials"]
    assert per_user_kind(config) == "oauth" and per_user_kind({"url": URL}) is None


@pytest.mark.parametrize(
    ("credentials", "field", "words"),
    [
        (
            {"kind": "oauth", "client_id": "gw", "token_endpoint": "https://idp.example/t"},
            "config.credentials.oauth",
            "give both authorization_endpoint and token_endpoint, or neither",
        ),
        (
            {"kind": "oauth", "client_id": "gw", "issuer": "ftp://idp.example"},
            "config.credentials.oauth.issuer",
            "http:// or https://",
        ),
        (
            {"kind": "oauth", "client_id": "gw", "scopes": ["two words"]},
            "config.credentials.oauth.scopes",
            "invalid scope",
        ),
        ({"kind": "oauth"}, "config.credentials.oauth.client_id", "Field required"),
        (
            {"kind": "secret", "format": "token"},
            "config.credentials.secret.format",
            "`{secret}` exactly once",
        ),
        (
            {"kind": "secret", "header": "Bad Header"},
            "config.credentials.secret.header",
            "invalid header name",
        ),
        ({"kind": "password"}, "config.credentials", "does not match any of the expected tags"),
    ],
)
def test_bad_credentials_are_refused_by_field(
    credentials: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        remote(credentials)
    errors = refused.value.details["errors"]
    assert any(e["field"] == field and words in e["message"] for e in errors), errors


def test_a_bundle_member_cannot_take_per_user_credentials() -> None:
    member = {
        "name": "gh",
        "type": "remote",
        "config": {"url": URL, "credentials": {"kind": "secret"}},
    }
    with pytest.raises(InvalidInput) as refused:
        parse_config("bundle", {"members": [member]})
    assert "need a server of their own" in refused.value.message


def test_headers_from_sealed_tokens() -> None:
    secret = {"credentials": {"kind": "secret", "header": "X-Api-Key", "format": "Token {secret}"}}
    assert credential_headers(secret, {"secret": {"value": "abc"}}) == {"X-Api-Key": "Token abc"}
    oauth = {"credentials": {"kind": "oauth", "client_id": "gw"}}
    sealed = {"token": {"access_token": "at", "refresh_token": "rt"}}
    assert credential_headers(oauth, sealed) == {"Authorization": "Bearer at"}


def test_well_known_locations() -> None:
    assert well_known(URL, "oauth-protected-resource") == [
        "https://mcp.example/.well-known/oauth-protected-resource/v1/mcp",
        "https://mcp.example/.well-known/oauth-protected-resource",
    ]
    assert well_known("https://idp.example", "oauth-authorization-server") == [
        "https://idp.example/.well-known/oauth-authorization-server"
    ]
