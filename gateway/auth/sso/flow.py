"""The sign-in flow with an identity provider, both legs.

``begin``: a state (kept by digest, single use, bound to this browser by a cookie), a
nonce and a PKCE verifier; the provider's authorization URL (authlib builds it).
``finish``: the callback's state must be ours, unused, unexpired and from the same
browser, the ``iss`` (RFC 9207) the provider's; the code is exchanged with the verifier
(authlib); the ID token is verified (joserfc, through the JWT verifier: signature,
``iss``, ``aud`` = our client id, ``exp``) and must carry our nonce; the person is read
(claims, userinfo, Graph, GitHub's API) and mapped to a user (mapping.py).

Every URL fetched passes the SSRF guard; failures become a :class:`SignInRefused`
in words, with the provider's raw answer only in the log.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from authlib.integrations.httpx_client import AsyncOAuth2Client
from sqlalchemy import update

from gateway.auth.jwt import JwtConfig, JwtVerifier
from gateway.auth.keys import hash_key
from gateway.auth.models import SignInState
from gateway.auth.principal import Principal
from gateway.auth.service import IdentityService
from gateway.auth.sso import presets
from gateway.auth.sso.mapping import SignInRefused, sign_in_user
from gateway.auth.sso.presets import Endpoints
from gateway.auth.sso.profile import Profile, entra_overage_groups, from_claims, from_github
from gateway.auth.sso.store import ProviderStore
from gateway.config_identity import SsoProvider
from gateway.db import Database, utcnow
from gateway.errors import NotFound, Unauthenticated
from gateway.pinned_http import PinnedTransport2, httpx_client
from gateway.ssrf import HostPins, check_url, proxied

log = logging.getLogger("gateway.auth")

STATE_TTL = timedelta(minutes=10)
_DISCOVERY_TTL = 3600.0
_TIMEOUT = 10.0
CALLBACK = "/auth/callback/{name}"


class SsoService:
    """Sign-in with the configured identity providers."""

    def __init__(
        self,
        db: Database,
        identity: IdentityService,
        store: ProviderStore,
        *,
        allow_private_urls: bool = False,
        leeway: float = 60.0,
    ) -> None:
        self.db = db
        self.identity = identity
        self.store = store
        self.allow_private_urls = allow_private_urls
        self.leeway = leeway
        # Keyed by the provider's whole configuration: a changed provider starts afresh.
        self._endpoints: dict[str, tuple[Endpoints, float]] = {}
        self._verifiers: dict[str, JwtVerifier] = {}

    async def listed(self) -> list[tuple[str, str]]:
        """``(name, label)`` of every provider, for the sign-in page."""
        return [(s.provider.name, presets.label(s.provider)) for s in await self.store.all()]

    async def provider(self, name: str) -> SsoProvider:
        found = await self.store.get(name)
        if found is None:
            raise NotFound(f"no sign-in provider named {name!r}")
        return found

    # --- leg 1 ------------------------------------------------------------------------
    async def begin(self, name: str, base: str, next_path: str) -> tuple[str, str]:
        """The provider's authorization URL and the browser-binding token (a cookie)."""
        provider = await self.provider(name)
        endpoints = await self.endpoints(provider)
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier, browser = secrets.token_urlsafe(64), secrets.token_urlsafe(32)
        redirect_uri = base + CALLBACK.format(name=name)
        async with self.db.session() as session:
            session.add(
                SignInState(
                    state_hash=hash_key(state),
                    provider=name,
                    nonce=nonce,
                    verifier=verifier,
                    redirect_uri=redirect_uri,
                    next_path=next_path,
                    browser_hash=hash_key(browser),
                    expires_at=utcnow() + STATE_TTL,
                )
            )
        extra = {"nonce": nonce} if presets.is_oidc(provider) else {}
        async with await self._client(provider, redirect_uri, endpoints.authorize) as client:
            url, _ = client.create_authorization_url(
                endpoints.authorize, state=state, code_verifier=verifier, **extra
            )
        return str(url), browser

    # --- leg 2 ------------------------------------------------------------------------
    async def finish(
        self, name: str, params: Mapping[str, str], browser: str | None
    ) -> tuple[Principal, str]:
        """The signed-in principal and where to go next, or :class:`SignInRefused`."""
        provider = await self.provider(name)
        state = await self._spend_state(name, params.get("state"), browser)
        if "error" in params:
            reason = params.get("error_description") or params["error"]
            raise SignInRefused(f"{presets.label(provider)} did not sign you in: {reason[:200]}")
        code = params.get("code")
        if not code:
            raise SignInRefused("the provider sent no authorization code")
        endpoints = await self.endpoints(provider)
        if endpoints.issuer and "iss" in params and params["iss"] != endpoints.issuer:
            raise SignInRefused("the answer came from another issuer than the one asked")
        try:
            profile = await self._profile(provider, endpoints, state, code)
        except (SignInRefused, NotFound):
            raise
        except Unauthenticated as exc:
            raise SignInRefused(f"the provider's ID token was refused: {exc.message}") from exc
        except Exception as exc:
            log.warning("sign-in with %s failed: %s", name, exc)
            raise SignInRefused(
                f"could not complete the sign-in with {presets.label(provider)}; try again"
            ) from exc
        return await sign_in_user(self.identity, provider, profile), state.next_path

    async def _spend_state(self, name: str, state: str | None, browser: str | None) -> SignInState:
        """The sign-in this callback belongs to, used up; refused when forged, replayed,
        expired, for another provider or finished in another browser."""
        refused = SignInRefused(
            "this sign-in link is invalid, expired or already used; start again"
        )
        if not state or not browser:
            raise refused
        digest = hash_key(state)
        async with self.db.session() as session:
            row = await session.get(SignInState, digest)
            if row is None or row.provider != name or row.expires_at <= utcnow():
                raise refused
            if not hmac.compare_digest(row.browser_hash, hash_key(browser)):
                raise refused
            spent = await session.execute(
                update(SignInState)
                .where(SignInState.state_hash == digest, SignInState.used_at.is_(None))
                .values(used_at=utcnow())
            )
            if spent.rowcount != 1:  # type: ignore[attr-defined]
                raise refused
            return row

    async def _profile(
        self, provider: SsoProvider, endpoints: Endpoints, state: SignInState, code: str
    ) -> Profile:
        async with await self._client(provider, state.redirect_uri, endpoints.token) as client:
            token = await client.fetch_token(
                endpoints.token, code=code, code_verifier=state.verifier
            )
        access = str(token.get("access_token") or "")
        if not access:
            raise ValueError("the token endpoint answered no access token")
        if endpoints.api:  # GitHub: OAuth 2.0 and a user API
            return await from_github(endpoints.api, access, self._get)
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SignInRefused("the provider answered no ID token (is 'openid' in scopes?)")
        claims = await self._verifier(provider, endpoints).verify(id_token)
        if not hmac.compare_digest(str(claims.get("nonce", "")), state.nonce):
            raise SignInRefused("the ID token does not carry this sign-in's nonce")
        if "email" not in claims and endpoints.userinfo:
            info = await self._get(endpoints.userinfo, access)
            if isinstance(info, dict) and info.get("sub") == claims.get("sub"):
                claims = {**info, **claims}
        profile = from_claims(claims, provider.group_claim)
        assert endpoints.issuer is not None
        overage = await entra_overage_groups(claims, endpoints.issuer, access, self._post)
        if overage is not None:
            profile = Profile(**{**vars(profile), "groups": overage})
        return profile

    # --- endpoints, keys, HTTP ----------------------------------------------------------
    async def endpoints(self, provider: SsoProvider) -> Endpoints:
        """The provider's endpoints (OpenID discovery, cached for an hour)."""
        if not presets.is_oidc(provider):
            return presets.github_endpoints(provider)
        cached = self._endpoints.get(_fingerprint(provider))
        if cached is not None and time.monotonic() - cached[1] < _DISCOVERY_TTL:
            return cached[0]
        issuer = presets.issuer(provider)
        assert issuer is not None
        try:
            doc = await self._get(f"{issuer}/.well-known/openid-configuration", None)
            found = Endpoints(
                authorize=provider.authorize_url or doc["authorization_endpoint"],
                token=provider.token_url or doc["token_endpoint"],
                issuer=str(doc.get("issuer") or issuer),
                jwks=doc.get("jwks_uri"),
                userinfo=doc.get("userinfo_endpoint"),
            )
        except Exception as exc:
            log.warning("could not read %s's discovery document: %s", provider.name, exc)
            raise SignInRefused(
                f"{presets.label(provider)} cannot be reached right now; try again later"
            ) from exc
        self._endpoints[_fingerprint(provider)] = (found, time.monotonic())
        return found

    def _verifier(self, provider: SsoProvider, endpoints: Endpoints) -> JwtVerifier:
        verifier = self._verifiers.get(_fingerprint(provider))
        if verifier is None:
            assert endpoints.issuer is not None
            verifier = JwtVerifier(
                JwtConfig(
                    issuer=endpoints.issuer,
                    audience=provider.client_id,
                    jwks_url=endpoints.jwks,
                    algorithms=("RS256", "PS256", "ES256", "EdDSA"),
                    shared_secret=None,
                    leeway=self.leeway,
                    allow_private_urls=self.allow_private_urls,
                )
            )
            self._verifiers[_fingerprint(provider)] = verifier
        return verifier

    async def _client(
        self, provider: SsoProvider, redirect_uri: str, url: str
    ) -> AsyncOAuth2Client:
        """authlib's OAuth client for ``url``, connecting only where the SSRF guard
        approved."""
        secret = provider.client_secret.get_secret_value() if provider.client_secret else None
        pins = HostPins.of(await check_url(url, self.allow_private_urls))
        transport = PinnedTransport2(pins) if pins is not None and not proxied(url) else None
        return AsyncOAuth2Client(
            transport=transport,
            client_id=provider.client_id,
            client_secret=secret,
            token_endpoint_auth_method="client_secret_post" if secret else "none",
            scope=" ".join(presets.scopes(provider)),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=_TIMEOUT,
        )

    async def _get(self, url: str, access_token: str | None) -> Any:
        return await self._call("GET", url, access_token)

    async def _post(self, url: str, access_token: str) -> Any:
        return await self._call("POST", url, access_token, {"securityEnabledOnly": False})

    async def _call(self, method: str, url: str, token: str | None, body: Any = None) -> Any:
        pin = await check_url(url, self.allow_private_urls)
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with httpx_client(url, HostPins.of(pin), timeout=_TIMEOUT) as client:
            response = await client.request(method, url, headers=headers, json=body)
        if response.status_code == 404:
            return None  # e.g. GitHub's /user/emails without the user:email scope
        response.raise_for_status()
        return response.json()


def _fingerprint(provider: SsoProvider) -> str:
    secret = provider.client_secret.get_secret_value() if provider.client_secret else ""
    return hash_key(provider.model_dump_json() + secret)
