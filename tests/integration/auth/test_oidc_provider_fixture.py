"""The OpenID provider fixture works (tests/fixtures/oidc, tests/support_oidc.py).

The provider is real — the npm package `oidc-provider`, a certified OpenID Provider —
on loopback. It stands in for GitHub, Google, Microsoft Entra ID and Okta, none of which
can be reached from here: their *claim shapes* (and GitHub's user API, Entra's Graph
overage endpoint) are imitated on top of it. The client side is authlib's OAuth2Client;
ID and access tokens are verified with joserfc against the provider's JWKS, as the
gateway will do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token  # type: ignore[import-untyped, unused-ignore]
from authlib.integrations.base_client.errors import OAuthError  # type: ignore[import-untyped, unused-ignore]
from authlib.integrations.httpx_client import OAuth2Client  # type: ignore[import-untyped, unused-ignore]
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.support import wait_for
from tests.support_oidc import OidcConfig, OidcProvider, OidcProviderFactory, SignInError

CALLBACK = "http://127.0.0.1:9/callback"
MCP_RESOURCE = "http://127.0.0.1:9/mcp"
ENTRA_ADMINS = "0b5a9b1e-8d0c-4c0e-9f6f-2a6a4c1e7d01"
ENTRA_DEVS = "7c3e2f10-1a2b-4c5d-8e9f-0a1b2c3d4e5f"


def _client(client_id: str, preset: str, **extra: Any) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "client_secret": f"{client_id}-secret",
        "redirect_uris": [CALLBACK],
        "post_logout_redirect_uris": ["http://127.0.0.1:9/signed-out"],
        "preset": preset,
        **extra,
    }


CONFIG: OidcConfig = {
    "clients": [
        _client("generic-app", "generic"),
        _client("google-app", "google"),
        _client("entra-app", "entra"),
        _client("okta-app", "okta"),
        _client("github-app", "github"),
        _client("third-party-app", "generic", first_party=False),
    ],
    "users": [
        {
            "id": "alice",
            "email": "alice@corp.example",
            "name": "Alice Admin",
            "groups": ["mcp-admins", "team:red"],
            "claims": {"department": "platform"},
            "oid": "11111111-2222-3333-4444-555555555555",
            "login": "alice-gh",
        },
        {
            "id": "bob",
            "email": "bob@gmail.com",
            "email_verified": False,
            "name": "Bob",
            "groups": [ENTRA_ADMINS, ENTRA_DEVS],
            "overage": True,
            "public_email": None,
            "emails": [
                {"email": "bob@users.noreply.example", "primary": False, "verified": True},
                {"email": "bob@gmail.com", "primary": True, "verified": False},
            ],
        },
    ],
    "resources": [
        {
            "indicator": MCP_RESOURCE,
            "scope": "mcp:tools mcp:read",
            "audience": "mcp-backend",
            "claims": ["email"],
        }
    ],
    "tenant_id": "9188040d-6c67-4c5b-b112-36a304b66dad",
}


@pytest.fixture(scope="module")
def idp(module_oidc_provider_factory: OidcProviderFactory) -> OidcProvider:
    return module_oidc_provider_factory(CONFIG)


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    """The user's browser: a cookie jar of its own per test."""
    with httpx.Client() as http:
        yield http


def keys(idp: OidcProvider) -> KeySet:
    return KeySet.import_key_set(httpx.get(idp.jwks_url, timeout=10).json())


def verify(idp: OidcProvider, token: str, *, aud: str, nonce: str | None = None) -> dict[str, Any]:
    """The claims of a JWT from the provider, once signature, iss, aud, exp (and nonce)
    check out."""
    decoded = jwt.decode(token, keys(idp), algorithms=["RS256"])
    checks: dict[str, Any] = {
        "iss": {"essential": True, "value": idp.issuer},
        "aud": {"essential": True, "value": aud},
        "exp": {"essential": True},
    }
    if nonce is not None:
        checks["nonce"] = {"essential": True, "value": nonce}
    jwt.JWTClaimsRegistry(**checks).validate(decoded.claims)
    return decoded.claims


def oauth(idp: OidcProvider, client_id: str, scope: str) -> OAuth2Client:
    client = idp.client(client_id)
    return OAuth2Client(
        client.client_id,
        client.client_secret,
        scope=scope,
        redirect_uri=client.redirect_uri,
        code_challenge_method="S256",
    )


def sign_in(
    idp: OidcProvider,
    browser: httpx.Client,
    client_id: str,
    account: str,
    scope: str = "openid email profile",
    **params: str,
) -> tuple[OAuth2Client, dict[str, Any], str]:
    """Authorization code + PKCE + nonce through the provider's login form; the client,
    its token response and the nonce sent."""
    client = oauth(idp, client_id, scope)
    verifier, nonce = generate_token(48), generate_token(16)
    # oidc-provider refuses a nonce without the openid scope (GitHub's OAuth-only case).
    extra = {"nonce": nonce, **params} if "openid" in scope.split() else params
    url, state = client.create_authorization_url(idp.authorize_url, code_verifier=verifier, **extra)
    back = idp.sign_in(browser, url, account)
    assert back.startswith(CALLBACK + "?"), back
    query = parse_qs(urlsplit(back).query)
    assert query["state"] == [state]
    assert "code" in query, back
    assert query["iss"] == [idp.issuer]  # RFC 9207
    resource = {"resource": params["resource"]} if "resource" in params else {}
    token = client.fetch_token(
        idp.token_url, authorization_response=back, code_verifier=verifier, **resource
    )
    return client, dict(token), nonce


def test_discovery_document(idp: OidcProvider) -> None:
    meta = httpx.get(idp.metadata_url, timeout=10).json()
    assert meta["issuer"] == idp.issuer
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["response_types_supported"] == ["code"]
    for endpoint in ("authorization", "token", "jwks", "userinfo", "revocation"):
        assert meta[f"{endpoint}_endpoint" if endpoint != "jwks" else "jwks_uri"].startswith(
            idp.issuer
        )
    assert meta["introspection_endpoint"] == f"{idp.issuer}/token/introspection"
    assert meta["end_session_endpoint"] == f"{idp.issuer}/session/end"
    assert {"refresh_token", "authorization_code"} <= set(meta["grant_types_supported"])
    assert {"groups", "offline_access"} <= set(meta["scopes_supported"])
    assert [key["alg"] for key in httpx.get(meta["jwks_uri"], timeout=10).json()["keys"]] == [
        "RS256"
    ]


@pytest.mark.parametrize(
    ("client_id", "scope", "expected", "absent"),
    [
        (
            "generic-app",
            "openid email profile",
            {
                "sub": "alice",
                "email": "alice@corp.example",
                "email_verified": True,
                "name": "Alice Admin",
                "groups": ["mcp-admins", "team:red"],
                "department": "platform",
            },
            {"tid", "hd"},
        ),
        (
            "google-app",
            "openid email profile",
            {
                "sub": "alice",
                "email": "alice@corp.example",
                "email_verified": True,
                "name": "Alice Admin",
                "hd": "corp.example",
                "picture": "https://lh3.googleusercontent.com/a/alice",
            },
            {"groups"},
        ),
        (
            "entra-app",
            "openid profile email",
            {
                "sub": "alice",
                "tid": "9188040d-6c67-4c5b-b112-36a304b66dad",
                "oid": "11111111-2222-3333-4444-555555555555",
                "preferred_username": "alice@corp.example",
                "name": "Alice Admin",
                "groups": ["mcp-admins", "team:red"],
            },
            {"_claim_names", "hd"},
        ),
        (
            "okta-app",
            "openid email profile groups",
            {
                "sub": "alice",
                "preferred_username": "alice@corp.example",
                "groups": ["mcp-admins", "team:red"],
                "email": "alice@corp.example",
            },
            {"tid", "hd"},
        ),
        # Okta sends groups only when the "groups" scope is asked for.
        ("okta-app", "openid email profile", {"sub": "alice"}, {"groups"}),
    ],
)
def test_sign_in_per_preset(
    idp: OidcProvider,
    browser: httpx.Client,
    client_id: str,
    scope: str,
    expected: dict[str, Any],
    absent: set[str],
) -> None:
    _, token, nonce = sign_in(idp, browser, client_id, "alice", scope)
    claims = verify(idp, token["id_token"], aud=client_id, nonce=nonce)
    assert {k: claims.get(k) for k in expected} == expected
    assert not absent & set(claims)
    assert token["refresh_token"]
    # The access token (opaque, for the userinfo endpoint) gives the same user.
    info = httpx.get(
        f"{idp.issuer}/me", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert info.status_code == 200, info.text
    assert info.json()["sub"] == "alice"


def test_single_sign_on_and_sign_out(idp: OidcProvider, browser: httpx.Client) -> None:
    _, token, _ = sign_in(idp, browser, "generic-app", "alice")
    # Signed in at the provider: the next authorization needs no form (SSO).
    sign_in(idp, browser, "google-app", "bob-is-not-asked")
    after = idp.sign_out(
        browser,
        {
            "id_token_hint": token["id_token"],
            "post_logout_redirect_uri": "http://127.0.0.1:9/signed-out",
            "state": "s1",
        },
    )
    assert after == "http://127.0.0.1:9/signed-out?state=s1"
    # Signed out: the form comes back, and a wrong account is refused.
    with pytest.raises(SignInError, match="unknown account"):
        sign_in(idp, browser, "generic-app", "mallory")
    # Tokens outlive the provider's session (tokens_expire_with_session is off).
    assert idp.introspect(token["refresh_token"], "generic-app")["active"] is True


def test_pkce_is_required(idp: OidcProvider, browser: httpx.Client) -> None:
    client = idp.client("generic-app")
    plain = OAuth2Client(client.client_id, client.client_secret, redirect_uri=CALLBACK)
    url, _ = plain.create_authorization_url(idp.authorize_url, scope="openid", nonce="n")
    back = idp.sign_in(browser, url, "alice")
    query = parse_qs(urlsplit(back).query)
    assert query["error"] == ["invalid_request"]
    assert "PKCE" in query["error_description"][0]


def test_consent_for_a_third_party_client(idp: OidcProvider, browser: httpx.Client) -> None:
    client = oauth(idp, "third-party-app", "openid email")
    url, _ = client.create_authorization_url(
        idp.authorize_url, code_verifier=generate_token(48), nonce="n"
    )
    denied = idp.sign_in(browser, url, "alice", consent=False)
    assert parse_qs(urlsplit(denied).query)["error"] == ["access_denied"]
    _, token, nonce = sign_in(idp, browser, "third-party-app", "alice", "openid email")
    assert verify(idp, token["id_token"], aud="third-party-app", nonce=nonce)["email"] == (
        "alice@corp.example"
    )


def test_entra_groups_overage_via_graph(idp: OidcProvider, browser: httpx.Client) -> None:
    _, token, nonce = sign_in(idp, browser, "entra-app", "bob", "openid profile")
    claims = verify(idp, token["id_token"], aud="entra-app", nonce=nonce)
    assert "groups" not in claims
    assert claims["_claim_names"] == {"groups": "src1"}
    endpoint = claims["_claim_sources"]["src1"]["endpoint"]
    assert endpoint == f"{idp.issuer}/graph/v1.0/users/{claims['oid']}/getMemberObjects"
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    groups = httpx.post(endpoint, json={"securityEnabledOnly": False}, headers=bearer)
    assert groups.status_code == 200, groups.text
    assert groups.json()["value"] == [ENTRA_ADMINS, ENTRA_DEVS]
    refused = httpx.post(endpoint, headers={"Authorization": "Bearer not-a-token"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_github_user_api(idp: OidcProvider, browser: httpx.Client) -> None:
    # GitHub is OAuth 2.0 only: no openid scope, no ID token; the API says who it is.
    _, token, _ = sign_in(idp, browser, "github-app", "bob", "read:user user:email")
    assert "id_token" not in token
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    user = httpx.get(f"{idp.issuer}/api/user", headers=auth).json()
    assert user["login"] == "bob"
    assert isinstance(user["id"], int)
    assert user["email"] is None  # no public email
    emails = httpx.get(f"{idp.issuer}/api/user/emails", headers=auth).json()
    assert [e for e in emails if e["primary"]] == [
        {"email": "bob@gmail.com", "primary": True, "verified": False}
    ]
    # GitHub's "token" scheme works too; a bad token gets GitHub's 401.
    old_scheme = {"Authorization": f"token {token['access_token']}"}
    assert httpx.get(f"{idp.issuer}/api/user", headers=old_scheme).status_code == 200
    bad = httpx.get(f"{idp.issuer}/api/user", headers={"Authorization": "token nope"})
    assert (bad.status_code, bad.json()["message"]) == (401, "Bad credentials")

    # Without user:email, /user/emails is a 404, as on GitHub; /user shows the public one.
    with httpx.Client() as alices_browser:
        _, narrow, _ = sign_in(idp, alices_browser, "github-app", "alice", "read:user")
    auth = {"Authorization": f"Bearer {narrow['access_token']}"}
    assert httpx.get(f"{idp.issuer}/api/user/emails", headers=auth).status_code == 404
    user = httpx.get(f"{idp.issuer}/api/user", headers=auth).json()
    assert (user["login"], user["email"]) == ("alice-gh", "alice@corp.example")


def test_jwt_access_token_for_a_resource(idp: OidcProvider, browser: httpx.Client) -> None:
    client, token, _ = sign_in(
        idp, browser, "entra-app", "alice", "openid mcp:tools", resource=MCP_RESOURCE
    )
    claims = verify(idp, token["access_token"], aud="mcp-backend")
    assert claims["sub"] == "alice"
    assert claims["client_id"] == "entra-app"
    assert claims["scope"] == "mcp:tools"
    assert claims["email"] == "alice@corp.example"  # the resource's configured claims
    assert claims["oid"] == "11111111-2222-3333-4444-555555555555"  # Entra's, always
    header = jwt.decode(token["access_token"], keys(idp), algorithms=["RS256"]).header
    assert header["typ"] == "at+jwt"  # RFC 9068
    # A refresh for the same resource gives another JWT for it.
    again = client.refresh_token(
        idp.token_url, refresh_token=token["refresh_token"], resource=MCP_RESOURCE
    )
    assert verify(idp, again["access_token"], aud="mcp-backend")["jti"] != claims["jti"]
    # An unknown resource is refused.
    with pytest.raises(OAuthError, match="invalid_target"):
        client.refresh_token(
            idp.token_url, refresh_token=token["refresh_token"], resource="http://elsewhere/"
        )


async def test_refresh_after_a_short_lived_access_token(
    oidc_provider_factory: OidcProviderFactory, browser: httpx.Client
) -> None:
    # 3 s, not 1: on a loaded CI machine the sign-in and the first /me call can
    # take over a second, and a 1 s token then expires before it is first used.
    idp = oidc_provider_factory({**CONFIG, "ttl": {"access_token": 3}})
    client, token, _ = sign_in(idp, browser, "generic-app", "alice")
    me = f"{idp.issuer}/me"

    def status(access_token: str) -> int:
        return httpx.get(me, headers={"Authorization": f"Bearer {access_token}"}).status_code

    assert token["expires_in"] == 3
    assert status(token["access_token"]) == 200

    await wait_for(
        lambda: status(token["access_token"]) == 401,
        timeout=10,
        what="the 3 s access token to expire",
    )
    fresh = client.refresh_token(idp.token_url, refresh_token=token["refresh_token"])
    assert fresh["access_token"] != token["access_token"]
    assert status(fresh["access_token"]) == 200
    assert verify(idp, fresh["id_token"], aud="generic-app")["sub"] == "alice"


def test_revoking_a_refresh_token(idp: OidcProvider, browser: httpx.Client) -> None:
    client, token, _ = sign_in(idp, browser, "okta-app", "alice")
    assert idp.introspect(token["refresh_token"], "okta-app")["active"] is True
    idp.revoke_token(token["refresh_token"], "okta-app", "refresh_token")
    assert idp.introspect(token["refresh_token"], "okta-app") == {"active": False}
    with pytest.raises(OAuthError, match="invalid_grant"):
        client.refresh_token(idp.token_url, refresh_token=token["refresh_token"])


def test_the_user_revokes_the_app(idp: OidcProvider, browser: httpx.Client) -> None:
    client, token, _ = sign_in(idp, browser, "google-app", "bob")
    _, other, _ = sign_in(idp, browser, "generic-app", "bob")
    revoked = idp.revoke_grants("bob", client_id="google-app")
    assert len(revoked) == 1
    with pytest.raises(OAuthError, match="invalid_grant"):
        client.refresh_token(idp.token_url, refresh_token=token["refresh_token"])
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert httpx.get(f"{idp.issuer}/me", headers=bearer).status_code == 401
    # Bob's grant to the other app is untouched.
    assert idp.introspect(other["refresh_token"], "generic-app")["active"] is True


def test_a_changed_account_shows_at_the_next_sign_in(
    oidc_provider_factory: OidcProviderFactory, browser: httpx.Client
) -> None:
    idp = oidc_provider_factory(CONFIG)
    idp.put_user({**CONFIG["users"][0], "groups": ["viewers"]})
    _, token, nonce = sign_in(idp, browser, "generic-app", "alice")
    assert verify(idp, token["id_token"], aud="generic-app", nonce=nonce)["groups"] == ["viewers"]


def test_an_mcp_style_client_registers_and_gets_a_resource_token(
    oidc_provider_factory: OidcProviderFactory, browser: httpx.Client
) -> None:
    """The delegation case: a public client registers itself (RFC 7591), asks for the
    MCP resource without openid, and gets a JWT access token for it."""
    assert (
        "registration_endpoint"
        not in httpx.get(f"{oidc_provider_factory(CONFIG).metadata_url}", timeout=10).json()
    )
    idp = oidc_provider_factory({**CONFIG, "registration": True})
    endpoint = httpx.get(idp.metadata_url, timeout=10).json()["registration_endpoint"]
    registered = httpx.post(
        endpoint,
        json={
            "redirect_uris": ["http://127.0.0.1:33418/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "application_type": "native",
        },
        timeout=10,
    )
    assert registered.status_code == 201, registered.text
    client_id = registered.json()["client_id"]
    client = OAuth2Client(
        client_id,
        None,
        token_endpoint_auth_method="none",
        scope="mcp:tools",
        redirect_uri="http://127.0.0.1:33418/callback",
        code_challenge_method="S256",
    )
    verifier = generate_token(48)
    url, _ = client.create_authorization_url(
        idp.authorize_url, code_verifier=verifier, resource=MCP_RESOURCE
    )
    back = idp.sign_in(browser, url, "alice")  # a consent page: a third-party client
    token = client.fetch_token(idp.token_url, authorization_response=back, code_verifier=verifier)
    claims = verify(idp, token["access_token"], aud="mcp-backend")
    assert (claims["sub"], claims["client_id"], claims["scope"]) == (
        "alice",
        client_id,
        "mcp:tools",
    )
    assert "id_token" not in token
    # Public clients' refresh tokens rotate (oidc-provider's rule).
    fresh = client.refresh_token(idp.token_url, refresh_token=token["refresh_token"])
    assert fresh["refresh_token"] != token["refresh_token"]
    assert verify(idp, fresh["access_token"], aud="mcp-backend")["sub"] == "alice"
