"""Browser sessions: the cookie a person gets by signing in (with an API key, or an
identity provider), for the portal and the OAuth consent page.

The cookie holds a random token; the database holds its SHA-256 (like keys). Writes
made with the cookie need a CSRF token, which is derived from the session token: a
page of ours can be given it, another site cannot compute it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select

from gateway.audit.service import AuditLog
from gateway.auth.keys import hash_key
from gateway.auth.models import WebSession
from gateway.auth.principal import Principal
from gateway.auth.service import IdentityService
from gateway.db import Database, utcnow
from gateway.errors import Unauthenticated

SESSION_PREFIX = "mgw_ws_"
COOKIE = "mcpgw_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


def csrf_token(session_token: str) -> str:
    """The CSRF token that goes with a session (sent back in a header or form field)."""
    return hashlib.sha256(b"mcpgw-csrf:" + session_token.encode()).hexdigest()


def csrf_matches(session_token: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(csrf_token(session_token), presented)


class SessionService:
    """Starts, resolves and ends browser sessions."""

    def __init__(
        self,
        db: Database,
        identity: IdentityService,
        ttl_seconds: int,
        audit: AuditLog | None = None,
    ) -> None:
        self.db = db
        self.identity = identity
        self.ttl = timedelta(seconds=ttl_seconds)
        self.audit = audit or AuditLog.off()
        # Called with the digest of an ended session (the authenticator's cache key).
        self.on_ended: Callable[[str], None] = lambda _digest: None

    async def start(self, principal: Principal, auth_method: str) -> str:
        """A new session for the signed-in ``principal``; the cookie's value."""
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        async with self.db.session() as session:
            session.add(
                WebSession(
                    token_hash=hash_key(token),
                    user_id=principal.user_id,
                    auth_method=auth_method,
                    scopes=list(principal.scopes),
                    expires_at=utcnow() + self.ttl,
                )
            )
        self.audit.change("session.start", principal, principal.user_id, new={"via": auth_method})
        return token

    async def authenticate(self, token: str) -> tuple[Principal, datetime]:
        """The principal of a live session and when it ends."""
        async with self.db.session() as session:
            row = (
                await session.execute(
                    select(WebSession).where(WebSession.token_hash == hash_key(token))
                )
            ).scalar_one_or_none()
        if row is None or row.revoked_at is not None:
            raise Unauthenticated("not signed in (or signed out)", code="invalid_session")
        if row.expires_at <= utcnow():
            raise Unauthenticated("the sign-in session expired", code="session_expired")
        principal = await self.identity.principal_of(row.user_id, tuple(row.scopes), "session")
        return principal, row.expires_at

    async def end(self, token: str, principal: Principal | None = None) -> None:
        """Sign out: the session stops working here at once (elsewhere within the auth
        cache TTL)."""
        digest = hash_key(token)
        async with self.db.session() as session:
            row = (
                await session.execute(select(WebSession).where(WebSession.token_hash == digest))
            ).scalar_one_or_none()
            if row is None or row.revoked_at is not None:
                return
            row.revoked_at = utcnow()
        self.on_ended(digest)
        self.audit.change("session.end", principal, row.user_id)
