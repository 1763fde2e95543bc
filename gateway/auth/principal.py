"""Who is making a request, as seen by every router and service."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from gateway.auth.rbac import Role, role_allows, scopes_allow
from gateway.errors import Forbidden


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the user, their role and teams, and the key used."""

    user_id: str
    email: str
    name: str
    role: str
    key_id: str | None
    scopes: tuple[str, ...]
    team_ids: tuple[str, ...] = ()
    # How /mcp presents tools to this caller (key's, else a team's); None: the global default.
    interface_mode: str | None = None
    # What the audit trail shows of the key (never the secret) and how the caller signed in.
    key_prefix: str | None = None
    auth_method: str = "api_key"
    # An OAuth access token is good for one resource (RFC 8707): its URL. None: any.
    audience: str | None = None
    # What policies match on besides the above (gateway/policy/engine.py): the teams'
    # names, the key's tags, and the key's own tool globs (None: any tool).
    team_names: tuple[str, ...] = ()
    key_tags: tuple[str, ...] = ()
    tools_allow: tuple[str, ...] | None = None
    tools_deny: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN and _allows(self.role, self.scopes, "users:write")

    def can(self, permission: str) -> bool:
        """Role grants it and the key's scopes allow it."""
        return _allows(self.role, self.scopes, permission)

    def require(self, permission: str) -> None:
        """Raise :class:`Forbidden` unless :meth:`can` says yes."""
        if not self.can(permission):
            raise Forbidden(
                f"this needs permission '{permission}', which role '{self.role}' "
                f"with key scopes {list(self.scopes)} does not have"
            )


@lru_cache(maxsize=8192)
def _allows(role: str, scopes: tuple[str, ...], permission: str) -> bool:
    # Asked on every MCP call; roles and scope grammar are fixed, so the answer for a
    # (role, scopes, permission) triple never changes.
    return role_allows(role, permission) and scopes_allow(scopes, permission)
