import re

import pytest

from gateway.auth.keys import KEY_PREFIX, generate_key, hash_key, visible_prefix
from gateway.auth.principal import Principal
from gateway.auth.rbac import role_allows, scopes_allow, scopes_within, validate_scope
from gateway.errors import Forbidden


def test_keys_have_the_documented_shape_and_are_unique() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"mgw_live_[A-Za-z0-9_\-]{43}", key)


def test_hash_is_sha256_and_prefix_is_short() -> None:
    key = generate_key()
    assert re.fullmatch(r"[0-9a-f]{64}", hash_key(key))
    assert hash_key(key) != hash_key(generate_key())
    prefix = visible_prefix(key)
    assert prefix.startswith(KEY_PREFIX)
    assert len(prefix) == len(KEY_PREFIX) + 6
    assert visible_prefix("custom-bootstrap-secret") == "cust…"


@pytest.mark.parametrize("scope", ["*", "tools:execute", "servers:*", "keys:read"])
def test_valid_scopes(scope: str) -> None:
    assert validate_scope(scope) == scope


@pytest.mark.parametrize(
    ("scope", "why"),
    [
        ("tools", "resource:action"),
        ("spaceships:read", "unknown resource"),
        ("tools:fly", "action"),
    ],
)
def test_invalid_scopes_say_why(scope: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        validate_scope(scope)


@pytest.mark.parametrize(
    ("role", "permission", "allowed"),
    [
        ("admin", "users:write", True),
        ("admin", "anything:at-all", True),
        ("operator", "servers:write", True),
        ("operator", "users:write", False),
        ("developer", "tools:execute", True),
        ("developer", "servers:write", False),
        ("viewer", "tools:read", True),
        ("viewer", "tools:execute", False),
        ("viewer", "keys:write", True),  # everyone manages their own keys
        ("intruder", "tools:read", False),
    ],
)
def test_role_matrix(role: str, permission: str, allowed: bool) -> None:
    assert role_allows(role, permission) is allowed


def test_key_scopes_narrow_the_role() -> None:
    admin_read_only = Principal("u", "a@x", "", "admin", "k", ("servers:read", "tools:*"))
    assert admin_read_only.can("servers:read")
    assert admin_read_only.can("tools:execute")
    assert not admin_read_only.can("servers:write")
    assert not admin_read_only.is_admin
    with pytest.raises(Forbidden, match="servers:write"):
        admin_read_only.require("servers:write")
    viewer_star = Principal("u", "v@x", "", "viewer", "k", ("*",))
    assert not viewer_star.can("tools:execute")  # a wide key cannot widen the role


def test_scopes_within() -> None:
    assert scopes_within(["tools:read"], ["*"]) == []
    assert scopes_within(["tools:read"], ["tools:*"]) == []
    assert scopes_within(["tools:*"], ["tools:read"]) == ["tools:*"]
    assert scopes_within(["*"], ["tools:*"]) == ["*"]
    assert scopes_within(["servers:read", "tools:execute"], ["servers:read"]) == ["tools:execute"]
    assert scopes_allow(["servers:*"], "servers:write")
