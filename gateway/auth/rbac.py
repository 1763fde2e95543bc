"""Roles, permissions and key scopes.

A permission is ``resource:action``. A request may do something when the user's
role grants it **and** the API key's scopes allow it, so a key can narrow what
its user may do but never widen it. Scopes use the same grammar, plus wildcards:
``*`` (everything the role allows) and ``resource:*``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    DEVELOPER = "developer"
    VIEWER = "viewer"


RESOURCES = frozenset(
    {
        "keys",
        "users",
        "teams",
        "servers",
        "tools",
        "skills",
        "sandboxes",
        "jobs",
        "audit",
        "settings",
        "policies",
    }
)
ACTIONS = frozenset({"read", "write", "execute"})

ROLE_GRANTS: dict[Role, frozenset[str]] = {
    Role.ADMIN: frozenset({"*"}),
    Role.OPERATOR: frozenset(
        {
            "servers:*",
            "tools:*",
            "skills:*",
            "sandboxes:*",
            "jobs:*",
            "audit:read",
            "users:read",
            "teams:read",
            "keys:read",
            "keys:write",
            "settings:read",
            "policies:read",
        }
    ),
    Role.DEVELOPER: frozenset(
        {
            "servers:read",
            "tools:read",
            "tools:execute",
            "skills:read",
            "skills:write",
            "sandboxes:*",
            "jobs:read",
            "teams:read",
            "keys:read",
            "keys:write",
        }
    ),
    Role.VIEWER: frozenset(
        {
            "servers:read",
            "tools:read",
            "skills:read",
            "sandboxes:read",
            "teams:read",
            "keys:read",
            "keys:write",
        }
    ),
}


def validate_scope(scope: str) -> str:
    """Return ``scope`` if it is well formed, else raise ValueError saying why."""
    if scope == "*":
        return scope
    resource, sep, action = scope.partition(":")
    if not sep:
        raise ValueError(f"scope {scope!r} must be '*' or 'resource:action'")
    if resource not in RESOURCES:
        raise ValueError(
            f"scope {scope!r}: unknown resource {resource!r} (one of {sorted(RESOURCES)})"
        )
    if action != "*" and action not in ACTIONS:
        raise ValueError(
            f"scope {scope!r}: unknown action {action!r} (one of {sorted(ACTIONS)} or *)"
        )
    return scope


def _covered(permission: str, grants: Iterable[str]) -> bool:
    resource = permission.partition(":")[0]
    return any(grant in ("*", permission, f"{resource}:*") for grant in grants)


def role_allows(role: str, permission: str) -> bool:
    """Does ``role`` grant ``permission``? Unknown roles grant nothing."""
    try:
        grants = ROLE_GRANTS[Role(role)]
    except ValueError:
        return False
    return _covered(permission, grants)


def scopes_allow(scopes: Iterable[str], permission: str) -> bool:
    return _covered(permission, scopes)


def scopes_within(requested: Iterable[str], granted: Iterable[str]) -> list[str]:
    """The requested scopes that ``granted`` does not cover (empty: all covered)."""
    granted = list(granted)
    outside = []
    for scope in requested:
        if "*" in granted or scope in granted:
            continue
        resource, _, action = scope.partition(":")
        if scope == "*" or action == "*":
            if f"{resource}:*" not in granted:
                outside.append(scope)
        elif not _covered(scope, granted):
            outside.append(scope)
    return outside
