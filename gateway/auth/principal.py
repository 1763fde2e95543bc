"""Who is making a request, as seen by every router and service."""

from __future__ import annotations

from dataclasses import dataclass

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

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN and scopes_allow(self.scopes, "users:write")

    def can(self, permission: str) -> bool:
        """Role grants it and the key's scopes allow it."""
        return role_allows(self.role, permission) and scopes_allow(self.scopes, permission)

    def require(self, permission: str) -> None:
        """Raise :class:`Forbidden` unless :meth:`can` says yes."""
        if not self.can(permission):
            raise Forbidden(
                f"this needs permission '{permission}', which role '{self.role}' "
                f"with key scopes {list(self.scopes)} does not have"
            )
