"""Authentication on the hot path: verified keys (and external JWTs, auth/jwt.py) served
from memory, key usage written in batches.

A request with a key seen in the last ``ttl`` seconds costs one SHA-256 and a dict
lookup; the database is read only on a miss. Revocation and user changes made in
this process drop cache entries at once; in other replicas the TTL bounds how long
a revoked key keeps working (a Redis event bus will shorten that to milliseconds).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from gateway.audit.entry import AuditEntry
from gateway.auth.jwt import JwtVerifier, looks_like_jwt
from gateway.auth.keys import hash_key, visible_prefix
from gateway.auth.oauth.service import ACCESS_PREFIX, OAuthService
from gateway.auth.principal import Principal
from gateway.auth.service import ClaimRules, IdentityService
from gateway.auth.sessions import SESSION_PREFIX, SessionService
from gateway.batching import WriteBehind
from gateway.db import utcnow
from gateway.errors import Unauthenticated

_MAX_ENTRIES = 50_000
_NEGATIVE_TTL = 2.0
# Seconds: a key's last-used time is kept to this resolution.
_USAGE_RESOLUTION = 1.0

_E = TypeVar("_E")


def _remember(table: dict[str, _E], digest: str, entry: _E) -> None:
    if len(table) >= _MAX_ENTRIES:
        table.clear()  # crude, but bounded: a full cache only costs re-verification
    table[digest] = entry


class Authenticator:
    """Turns a bearer token into a :class:`Principal`, caching successes and failures."""

    def __init__(
        self,
        identity: IdentityService,
        ttl_seconds: float,
        jwt: JwtVerifier | None = None,
        rules: ClaimRules | None = None,
        *,
        oauth: OAuthService | None = None,
        sessions: SessionService | None = None,
    ) -> None:
        self.identity = identity
        self.jwt = jwt  # external bearer JWTs, when an issuer is configured
        self.oauth = oauth  # access tokens of the gateway's own authorization server
        self.sessions = sessions  # browser sessions (cookies)
        self.rules = rules or ClaimRules()
        self.audit = identity.audit  # failures are audited: who (key prefix), from where, why
        self.ttl = ttl_seconds
        self._hits: dict[str, tuple[Principal, float]] = {}
        # key id → when (monotonic) its use was last noted
        self._noted: dict[str, float] = {}
        self._misses: dict[str, tuple[Unauthenticated, float]] = {}
        # key id → when it was last used, written to its row in batches
        self._usage: WriteBehind[str, datetime] = WriteBehind(
            "key usage", self.identity.record_key_use
        )
        identity.on_key_revoked = self.forget_key
        identity.on_user_changed = self.forget_user
        if oauth is not None:
            oauth.on_tokens_revoked = self.forget_digests
        if sessions is not None:
            sessions.on_ended = lambda digest: self.forget_digests([digest])

    async def authenticate(self, token: str, *, cookie: bool = False) -> Principal:
        """The principal of a bearer token (or, with ``cookie``, of a session cookie:
        each kind of credential is accepted only where it belongs)."""
        if token.startswith(SESSION_PREFIX) is not cookie:
            raise Unauthenticated(
                "a session cookie is not a bearer token" if not cookie else "not a session cookie",
                code="invalid_token",
            )
        digest = hash_key(token)
        now = time.monotonic()
        hit = self._hits.get(digest)
        if hit is not None and hit[1] > now:
            principal = hit[0]
        else:
            miss = self._misses.get(digest)
            if miss is not None and miss[1] > now:
                self._refused(token, miss[0])
                raise miss[0]
            expires = now + self.ttl
            try:
                if cookie and self.sessions is not None:
                    principal, ends = await self.sessions.authenticate(token)
                    expires = min(expires, now + (ends - utcnow()).total_seconds())
                elif token.startswith(ACCESS_PREFIX) and self.oauth is not None:
                    principal, ends = await self.oauth.authenticate(token)
                    expires = min(expires, now + (ends - utcnow()).total_seconds())
                elif self.jwt is not None and looks_like_jwt(token):
                    claims = await self.jwt.verify(token)
                    principal = await self.identity.authenticate_claims(claims, self.rules)
                    # trusted from memory no longer than the token itself
                    expires = min(expires, now + float(claims["exp"]) - time.time())
                else:
                    principal = await self.identity.authenticate(token)
            except Unauthenticated as exc:
                _remember(self._misses, digest, (exc, now + min(self.ttl, _NEGATIVE_TTL)))
                self._refused(token, exc)
                raise
            if expires > now:
                _remember(self._hits, digest, (principal, expires))
        key_id = principal.key_id
        if key_id is not None:
            # A key's last use, to the second: noted once a second at most (a clock read
            # and a note per call cost a few per cent of a cached answer).
            noted = self._noted.get(key_id)
            if noted is None or now - noted >= _USAGE_RESOLUTION:
                _remember(self._noted, key_id, now)
                self._usage.note(key_id, utcnow())
        return principal

    async def authenticate_certificate(self, email: str) -> Principal:
        """The user a verified client certificate names (by its email), cached as a
        token would be."""
        key = "mtls:" + email
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._hits.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            principal = await self.identity.authenticate_email(email, "mtls")
        except Unauthenticated as exc:
            self.audit.record(
                AuditEntry(
                    action="auth.failure",
                    outcome="denied",
                    actor={"email": email, "auth_method": "mtls"},
                    error_code=exc.code,
                    error=exc.message,
                )
            )
            raise
        _remember(self._hits, digest, (principal, now + self.ttl))
        return principal

    def _refused(self, token: str, exc: Unauthenticated) -> None:
        self.audit.record(
            AuditEntry(
                action="auth.failure",
                outcome="denied",
                actor=_who_failed(token),
                error_code=exc.code,
                error=exc.message,
            )
        )

    def forget_digests(self, digests: Sequence[str]) -> None:
        """Drop cached credentials by digest (revoked OAuth tokens, ended sessions)."""
        for digest in digests:
            self._hits.pop(digest, None)

    def forget_key(self, key_id: str) -> None:
        for digest in [d for d, (p, _) in self._hits.items() if p.key_id == key_id]:
            del self._hits[digest]

    def forget_user(self, user_id: str) -> None:
        for digest in [d for d, (p, _) in self._hits.items() if p.user_id == user_id]:
            del self._hits[digest]

    # --- last-used bookkeeping, off the request path ----------------------------------
    async def flush_usage(self) -> None:
        """Write pending last-used times; keeps them for the next try if the write fails."""
        await self._usage.flush()

    async def run_usage_flusher(self, interval: float) -> None:
        """Flush every ``interval`` seconds until cancelled; shutdown then calls flush_usage."""
        await self._usage.run(interval)


def _who_failed(token: str) -> dict[str, str]:
    """What a refusal's audit row says of the credential: its kind, and for an API key
    the prefix listings show; nothing of any other token."""
    if token.startswith(ACCESS_PREFIX):
        return {"auth_method": "oauth"}
    if token.startswith(SESSION_PREFIX):
        return {"auth_method": "session"}
    if looks_like_jwt(token):
        return {"auth_method": "jwt"}
    return {"key_prefix": visible_prefix(token), "auth_method": "api_key"}
