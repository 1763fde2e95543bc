"""Sign-in leftovers cleared away: expired authorization requests and sign-in states,
ended browser sessions, expired OAuth tokens. They stop working at expiry anyway; this
keeps the tables small. Revoked refresh tokens stay until they expire: a replayed one
must still be recognised (and revoke its grant)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import delete, or_

from gateway.auth.models import SignInState, WebSession
from gateway.auth.oauth.models import OAuthRequest, OAuthToken
from gateway.db import Database, utcnow

log = logging.getLogger("gateway.auth")

GRACE = timedelta(days=1)  # kept a little past expiry, for whoever investigates


async def prune_expired(db: Database) -> int:
    """Delete what expired more than a day ago; how many rows went."""
    cutoff = utcnow() - GRACE
    statements = [
        delete(OAuthRequest).where(OAuthRequest.expires_at < cutoff),
        delete(SignInState).where(SignInState.expires_at < cutoff),
        delete(WebSession).where(
            or_(WebSession.expires_at < cutoff, WebSession.revoked_at < cutoff)
        ),
        delete(OAuthToken).where(OAuthToken.expires_at < cutoff),
    ]
    removed = 0
    async with db.session() as session:
        for statement in statements:
            result = await session.execute(statement)
            removed += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return removed


async def run_pruner(db: Database, interval: float = 3600.0) -> None:
    """Prune every ``interval`` seconds until cancelled; a failure waits for the next."""
    while True:
        try:
            removed = await prune_expired(db)
            if removed:
                log.info("pruned expired sign-in rows", extra={"rows": removed})
        except Exception as exc:  # the database is away: next time
            log.warning("could not prune expired sign-in rows: %s", exc)
        await asyncio.sleep(interval)
