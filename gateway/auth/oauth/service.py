"""The gateway's OAuth authorization server: its use cases, behind the MCP SDK's
protocol handlers (gateway/auth/oauth/routes.py), which parse requests, check PKCE and
client secrets and shape responses.

Clients register (RFC 7591); an authorization request waits for the user's decision
(the consent page, after sign-in); the approved request becomes a one-time code; the
code becomes a *grant*: an access token bound to one resource (RFC 8707) and a refresh
token, rotated together. Revoking any token of a grant revokes the whole grant, and a
replayed code or refresh token does the same (the stolen-token case).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    RefreshToken,
    TokenError,
    construct_redirect_uri,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from sqlalchemy import select, update

from gateway.audit.service import AuditLog
from gateway.auth.keys import hash_key
from gateway.auth.oauth.cimd import fetch_client_document, is_metadata_url
from gateway.auth.oauth.models import OAuthClient, OAuthRequest
from gateway.auth.oauth.models import OAuthToken as TokenRow
from gateway.auth.oauth.resources import MCP_SCOPES, UNIFIED, canonical_resource
from gateway.auth.principal import Principal
from gateway.auth.rbac import validate_scope
from gateway.auth.service import IdentityService
from gateway.crypto import SecretBox
from gateway.db import Database, new_id, utcnow
from gateway.errors import NotFound, Unauthenticated

ACCESS_PREFIX = "mgw_at_"
REFRESH_PREFIX = "mgw_rt_"
CODE_TTL = timedelta(minutes=5)  # RFC 6749 §4.1.2: short-lived, 10 minutes at most
REQUEST_TTL = timedelta(minutes=15)  # time the user has to sign in and decide
DOCUMENT_TTL = timedelta(hours=1)  # a client metadata document is read again after this
log = logging.getLogger("gateway.auth")


class IssuedCode(AuthorizationCode):
    """An approved request's code, as the token endpoint sees it."""

    request_id: str
    user_id: str


class GrantedRefresh(RefreshToken):
    token_id: str
    grant_id: str
    user_id: str


class GrantedAccess(AccessToken):
    token_id: str
    grant_id: str
    user_id: str


@dataclass(frozen=True)
class OAuthPolicy:
    """Lifetimes (seconds) and whether clients may register themselves."""

    access_ttl: int = 3600
    refresh_ttl: int = 30 * 86_400
    registration: bool = True
    # Client metadata documents may live on private addresses (and plain http): tests
    # and closed networks only, as for every URL the gateway fetches.
    allow_private_urls: bool = False


@dataclass(frozen=True)
class PendingAuthorization:
    """What the consent page shows: who asks, for what, and where the answer goes."""

    id: str
    client_id: str
    client_name: str
    redirect_uri: str
    scopes: tuple[str, ...]
    resource: str


class OAuthService:
    """Clients, authorization requests, codes and tokens, stored in the database."""

    def __init__(
        self,
        db: Database,
        identity: IdentityService,
        box: SecretBox,
        policy: OAuthPolicy,
        audit: AuditLog | None = None,
    ) -> None:
        self.db = db
        self.identity = identity
        self.box = box
        self.policy = policy
        self.audit = audit or AuditLog.off()
        # Called with the digests of revoked access tokens (the authenticator's cache keys).
        self.on_tokens_revoked: Callable[[Sequence[str]], None] = lambda _digests: None

    # --- clients ----------------------------------------------------------------------
    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        """The registered client, its secret opened for the token endpoint's check; a
        client id that is a metadata document's URL is read from there (and kept)."""
        async with self.db.session() as session:
            row = await session.get(OAuthClient, client_id)
        stale = row is None or row.created_at <= utcnow() - DOCUMENT_TTL
        if stale and is_metadata_url(client_id, allow_http=self.policy.allow_private_urls):
            return await self._client_document(client_id, row)
        if row is None:
            return None
        info = OAuthClientInformationFull.model_validate({**row.info, "client_id": client_id})
        if row.secret_sealed:
            info.client_secret = self.box.open(row.secret_sealed)["client"]["secret"]
        return info

    async def _client_document(
        self, url: str, row: OAuthClient | None
    ) -> OAuthClientInformationFull | None:
        """Read a client's metadata document and keep it (tokens refer to the client);
        when it cannot be read, what was read before, if anything."""
        try:
            info = await fetch_client_document(url, self.policy.allow_private_urls)
        except Exception as exc:  # unreachable, refused by the SSRF guard, invalid
            log.warning("client metadata document %s refused: %s", url, exc)
            if row is None:
                return None
            return OAuthClientInformationFull.model_validate({**row.info, "client_id": url})
        stored = info.model_dump(mode="json", exclude={"client_secret", "client_id"})
        async with self.db.session() as session:
            found = await session.get(OAuthClient, url)
            if found is None:
                session.add(OAuthClient(client_id=url, info=stored))
            else:
                found.info, found.created_at = stored, utcnow()
        return info

    async def register_client(self, info: OAuthClientInformationFull) -> None:
        """Store a client the registration endpoint accepted."""
        stored = info.model_dump(mode="json", exclude={"client_secret", "client_id"})
        sealed = (
            self.box.seal({"client": {"secret": info.client_secret}})
            if info.client_secret
            else None
        )
        async with self.db.session() as session:
            session.add(OAuthClient(client_id=info.client_id, info=stored, secret_sealed=sealed))
        self.audit.change(
            "oauth.client.register",
            None,
            info.client_id,
            new={"client_name": info.client_name, "redirect_uris": stored.get("redirect_uris")},
            actor={"auth_method": "oauth"},
        )

    # --- the authorization request and the user's decision ----------------------------
    async def begin(
        self, client: OAuthClientInformationFull, params: AuthorizationParams, base: str
    ) -> str:
        """Keep a validated authorization request until the user decides; its id."""
        resource = canonical_resource(params.resource or f"{base}{UNIFIED}", base)
        if resource is None:
            raise AuthorizeError("invalid_target", "the resource is not one this gateway serves")
        scopes = _scopes(params.scopes, client)
        request = OAuthRequest(
            id=secrets.token_urlsafe(24),
            client_id=client.client_id,
            params={
                "redirect_uri": str(params.redirect_uri),
                "explicit": params.redirect_uri_provided_explicitly,
                "state": params.state,
                "scopes": list(scopes),
                "challenge": params.code_challenge,
                "resource": resource,
            },
            expires_at=utcnow() + REQUEST_TTL,
        )
        async with self.db.session() as session:
            session.add(request)
        return request.id

    async def pending(self, request_id: str) -> PendingAuthorization:
        """The request waiting for a decision; :class:`NotFound` once decided or expired."""
        async with self.db.session() as session:
            row = await session.get(OAuthRequest, request_id)
            client = await session.get(OAuthClient, row.client_id) if row else None
        if (
            row is None
            or client is None
            or row.user_id
            or row.used_at
            or row.expires_at <= utcnow()
        ):
            raise NotFound("this sign-in request is unknown, expired or already answered")
        p = row.params
        return PendingAuthorization(
            id=row.id,
            client_id=row.client_id,
            client_name=str(client.info.get("client_name") or row.client_id),
            redirect_uri=p["redirect_uri"],
            scopes=tuple(p["scopes"]),
            resource=p["resource"],
        )

    async def decide(self, request_id: str, principal: Principal, approve: bool) -> str:
        """Record the user's answer; the URL that takes it back to the client."""
        pending = await self.pending(request_id)
        code = secrets.token_urlsafe(32)
        async with self.db.session() as session:
            row = await session.get(OAuthRequest, request_id)
            assert row is not None
            state = row.params.get("state")
            if approve:
                row.user_id = principal.user_id
                row.code_hash = hash_key(code)
                row.expires_at = utcnow() + CODE_TTL
            else:
                row.used_at = utcnow()
        self.audit.change(
            "oauth.authorize",
            principal,
            pending.client_id,
            new={
                "decision": "approved" if approve else "denied",
                "scopes": list(pending.scopes),
                "resource": pending.resource,
            },
        )
        if not approve:
            return construct_redirect_uri(pending.redirect_uri, error="access_denied", state=state)
        return construct_redirect_uri(pending.redirect_uri, code=code, state=state)

    # --- codes ------------------------------------------------------------------------
    async def load_code(self, client: OAuthClientInformationFull, code: str) -> IssuedCode | None:
        """The code's request; None for an unknown code. A code used before revokes what
        it was exchanged for (someone else holds it)."""
        async with self.db.session() as session:
            row = (
                await session.execute(
                    select(OAuthRequest).where(OAuthRequest.code_hash == hash_key(code))
                )
            ).scalar_one_or_none()
        if row is None or row.client_id != client.client_id or row.user_id is None:
            return None
        if row.used_at is not None:
            if row.grant_id:
                await self.revoke_grant(row.grant_id, why="authorization code replayed")
            return None
        p = row.params
        return IssuedCode(
            code=code,
            scopes=list(p["scopes"]),
            expires_at=row.expires_at.timestamp(),
            client_id=row.client_id,
            code_challenge=p["challenge"],
            redirect_uri=p["redirect_uri"],
            redirect_uri_provided_explicitly=p["explicit"],
            resource=p["resource"],
            subject=row.user_id,
            request_id=row.id,
            user_id=row.user_id,
        )

    async def exchange_code(
        self, client: OAuthClientInformationFull, code: IssuedCode
    ) -> OAuthToken:
        """Spend the code (once, even with two exchanges racing) for a new grant."""
        grant_id = new_id()
        async with self.db.session() as session:
            spent = await session.execute(
                update(OAuthRequest)
                .where(OAuthRequest.id == code.request_id, OAuthRequest.used_at.is_(None))
                .values(used_at=utcnow(), grant_id=grant_id)
            )
            if spent.rowcount != 1:  # type: ignore[attr-defined]
                raise TokenError("invalid_grant", "authorization code already used")
        assert code.resource is not None
        return await self._issue(
            grant_id, client.client_id, code.user_id, code.scopes, code.resource
        )

    # --- refresh ----------------------------------------------------------------------
    async def load_refresh(
        self, client: OAuthClientInformationFull, token: str
    ) -> GrantedRefresh | None:
        row = await self._token(token, "refresh")
        if row is None or row.client_id != client.client_id:
            return None
        if row.revoked_at is not None:
            # A rotated-away refresh token came back: whoever uses it, the grant is
            # compromised (OAuth 2.1 §6.1 refresh token rotation).
            await self.revoke_grant(row.grant_id, why="refresh token replayed")
            return None
        return _granted(GrantedRefresh, token, row)

    async def exchange_refresh(
        self, client: OAuthClientInformationFull, refresh: GrantedRefresh, scopes: list[str]
    ) -> OAuthToken:
        """Rotate: the refresh token is spent, a new pair issued on the same grant."""
        async with self.db.session() as session:
            spent = await session.execute(
                update(TokenRow)
                .where(TokenRow.id == refresh.token_id, TokenRow.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            if spent.rowcount != 1:  # type: ignore[attr-defined]
                raise TokenError("invalid_grant", "refresh token already used")
        assert refresh.resource is not None
        return await self._issue(
            refresh.grant_id, client.client_id, refresh.user_id, scopes, refresh.resource
        )

    # --- access tokens and revocation -------------------------------------------------
    async def load_access(self, token: str) -> GrantedAccess | None:
        row = await self._token(token, "access")
        if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
            return None
        return _granted(GrantedAccess, token, row)

    async def revoke(self, token: GrantedAccess | GrantedRefresh) -> None:
        """RFC 7009: revoking either token of a grant ends the grant."""
        await self.revoke_grant(token.grant_id, why="revoked by the client")

    async def revoke_grant(self, grant_id: str, *, why: str) -> None:
        """Revoke every token of a grant and drop the cached ones."""
        async with self.db.session() as session:
            rows = (
                (
                    await session.execute(
                        select(TokenRow).where(
                            TokenRow.grant_id == grant_id, TokenRow.revoked_at.is_(None)
                        )
                    )
                )
                .scalars()
                .all()
            )
            now = utcnow()
            for row in rows:
                row.revoked_at = now
        if rows:
            self.on_tokens_revoked([r.token_hash for r in rows if r.kind == "access"])
            self.audit.change(
                "oauth.revoke",
                None,
                rows[0].client_id,
                new={"grant": grant_id, "why": why, "tokens": len(rows)},
                actor={"user_id": rows[0].user_id, "auth_method": "oauth"},
            )

    async def authenticate(self, token: str) -> tuple[Principal, datetime]:
        """The principal of a live access token (bound to its resource) and when the
        token expires; :class:`Unauthenticated` otherwise."""
        row = await self._token(token, "access")
        if row is None or row.revoked_at is not None:
            raise Unauthenticated("invalid or revoked access token", code="invalid_token")
        if row.expires_at <= utcnow():
            raise Unauthenticated("access token expired", code="token_expired")
        principal = await self.identity.principal_of(row.user_id, tuple(row.scopes), "oauth")
        return replace(principal, audience=row.resource), row.expires_at

    # --- helpers ----------------------------------------------------------------------
    async def _token(self, token: str, kind: str) -> TokenRow | None:
        async with self.db.session() as session:
            row = (
                await session.execute(
                    select(TokenRow).where(TokenRow.token_hash == hash_key(token))
                )
            ).scalar_one_or_none()
        return row if row is not None and row.kind == kind else None

    async def _issue(
        self, grant_id: str, client_id: str, user_id: str, scopes: Iterable[str], resource: str
    ) -> OAuthToken:
        access = ACCESS_PREFIX + secrets.token_urlsafe(32)
        refresh = REFRESH_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        scopes = list(scopes)
        common: dict[str, Any] = {
            "grant_id": grant_id,
            "client_id": client_id,
            "user_id": user_id,
            "scopes": scopes,
            "resource": resource,
        }
        async with self.db.session() as session:
            session.add(
                TokenRow(
                    token_hash=hash_key(access),
                    kind="access",
                    expires_at=now + timedelta(seconds=self.policy.access_ttl),
                    **common,
                )
            )
            session.add(
                TokenRow(
                    token_hash=hash_key(refresh),
                    kind="refresh",
                    expires_at=now + timedelta(seconds=self.policy.refresh_ttl),
                    **common,
                )
            )
        return OAuthToken(
            access_token=access,
            expires_in=self.policy.access_ttl,
            scope=" ".join(scopes),
            refresh_token=refresh,
        )


_Granted = TypeVar("_Granted", GrantedAccess, GrantedRefresh)


def _granted(kind: type[_Granted], token: str, row: TokenRow) -> _Granted:
    """A stored token as the SDK's handlers see it."""
    return kind(
        token=token,
        client_id=row.client_id,
        scopes=list(row.scopes),
        expires_at=int(row.expires_at.timestamp()),
        resource=row.resource,
        subject=row.user_id,
        token_id=row.id,
        grant_id=row.grant_id,
        user_id=row.user_id,
    )


def _scopes(requested: list[str] | None, client: OAuthClientInformationFull) -> tuple[str, ...]:
    """The scopes a request asks for: its own, else the client's registered ones, else
    what /mcp needs. Each must be one of ours."""
    scopes = requested or (client.scope.split() if client.scope else list(MCP_SCOPES))
    for scope in scopes:
        try:
            validate_scope(scope)
        except ValueError as exc:
            raise AuthorizeError("invalid_scope", str(exc)) from exc
    return tuple(dict.fromkeys(scopes))
