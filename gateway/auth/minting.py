"""What a new API key may be, given the key minting it: never longer-lived, never
reaching more tools (its own tool globs)."""

from __future__ import annotations

from datetime import datetime

from gateway.auth.principal import Principal
from gateway.auth.schemas import KeyCreate
from gateway.errors import Forbidden, InvalidInput


def check_within_expiry(
    expires_at: datetime | None, limit: datetime | None, data: KeyCreate
) -> None:
    """Refuse a key that would outlive the key minting it.

    An expiring key must not be able to extend its own life by minting a longer-lived
    (or never-expiring) successor; that holds for admins creating keys for others too.
    Refusing (rather than silently clamping) lets the caller see the limit and choose.
    """
    if limit is None or (expires_at is not None and expires_at <= limit):
        return
    field = "expires_in_days" if data.expires_in_days is not None else "expires_at"
    asked = "never expire" if expires_at is None else f"expire at {expires_at.isoformat()}"
    message = (
        f"a key cannot outlive the key creating it: that key expires at "
        f"{limit.isoformat()}, the new key would {asked}"
    )
    raise InvalidInput(
        message,
        errors=[{"field": field, "message": f"must be no later than {limit.isoformat()}"}],
    )


def key_globs(principal: Principal, data: KeyCreate) -> tuple[list[str] | None, list[str] | None]:
    """A new key's tool globs, never wider than the key minting it: its deny globs are
    kept, and a minting key limited to some tools mints keys limited to (some of) them."""
    deny = list(dict.fromkeys([*principal.tools_deny, *data.tools_deny]))
    allow = data.tools_allow
    granted = principal.tools_allow
    if granted is not None:
        if allow is None:
            allow = list(granted)
        outside = [p for p in allow if p not in granted]
        if outside:
            raise Forbidden(
                f"a key cannot reach more tools than the key creating it: {outside} not in "
                f"its tools_allow {list(granted)}"
            )
    return (list(dict.fromkeys(allow)) if allow is not None else None), deny or None
