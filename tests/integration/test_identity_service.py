"""Identity use cases on both backends: bootstrap, authentication, keys, users, teams."""

from datetime import UTC, datetime, timedelta

import pytest

from gateway.auth.principal import Principal
from gateway.auth.schemas import KeyCreate, MemberAdd, TeamCreate, UserCreate, UserUpdate
from gateway.auth.service import IdentityService
from gateway.db import Database
from gateway.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated

KEY = "mgw_live_service_test_bootstrap_0001"


@pytest.fixture
async def svc(database: Database) -> IdentityService:
    return IdentityService(database)


@pytest.fixture
async def admin(svc: IdentityService) -> Principal:
    await svc.bootstrap("admin@example.com", KEY)
    return await svc.authenticate(KEY)


async def _principal_with_role(
    svc: IdentityService, admin: Principal, email: str, role: str, scopes: list[str] | None = None
) -> Principal:
    user = await svc.create_user(admin, UserCreate(email=email, role=role))  # type: ignore[arg-type]
    _, secret = await svc.create_key(
        admin, KeyCreate(name="t", user_id=user.id, scopes=scopes or ["*"])
    )
    return await svc.authenticate(secret)


async def test_bootstrap_creates_admin_once(svc: IdentityService) -> None:
    first = await svc.bootstrap("admin@example.com", None)
    assert first.created_admin
    assert first.key is not None and first.key.startswith("mgw_live_")
    principal = await svc.authenticate(first.key)
    assert (principal.role, principal.email) == ("admin", "admin@example.com")
    again = await svc.bootstrap("admin@example.com", None)
    assert not again.created_admin
    assert again.key is None  # a generated key is shown exactly once


async def test_bootstrap_key_is_the_admins_key_and_can_be_added_later(svc: IdentityService) -> None:
    outcome = await svc.bootstrap("admin@example.com", KEY)
    assert outcome.created_admin and outcome.key is None
    assert (await svc.authenticate(KEY)).role == "admin"
    later_key = "mgw_live_a_new_bootstrap_key_for_existing_db"
    outcome = await svc.bootstrap("admin@example.com", later_key)
    assert outcome.installed_bootstrap_key
    assert (await svc.authenticate(later_key)).email == "admin@example.com"
    assert not (await svc.bootstrap("admin@example.com", later_key)).installed_bootstrap_key


async def test_unknown_revoked_expired_and_inactive_keys_are_rejected(
    svc: IdentityService, admin: Principal
) -> None:
    with pytest.raises(Unauthenticated, match="invalid"):
        await svc.authenticate("mgw_live_nope")
    key, secret = await svc.create_key(admin, KeyCreate(name="short-lived"))
    await svc.revoke_key(admin, key.id)
    with pytest.raises(Unauthenticated, match="revoked"):
        await svc.authenticate(secret)

    dev = await _principal_with_role(svc, admin, "dev@example.com", "developer")
    key, secret = await svc.create_key(
        dev, KeyCreate(name="x", expires_at=datetime.now(UTC) + timedelta(days=1))
    )
    async with svc.db.session() as s:
        row = await s.get(type(key), key.id)
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    with pytest.raises(Unauthenticated, match="expired") as info:
        await svc.authenticate(secret)
    assert info.value.code == "expired_api_key"

    _, working = await svc.create_key(dev, KeyCreate(name="y"))
    assert (await svc.authenticate(working)).user_id == dev.user_id
    await svc.update_user(admin, dev.user_id, UserUpdate(is_active=False))
    with pytest.raises(Unauthenticated, match="deactivated"):
        await svc.authenticate(working)


async def test_keys_cannot_escalate(svc: IdentityService, admin: Principal) -> None:
    narrow = await _principal_with_role(
        svc, admin, "ops@example.com", "operator", ["keys:write", "servers:read"]
    )
    with pytest.raises(Forbidden, match="cannot grant more"):
        await svc.create_key(narrow, KeyCreate(name="wide", scopes=["*"]))
    _, secret = await svc.create_key(narrow, KeyCreate(name="ok", scopes=["servers:read"]))
    assert (await svc.authenticate(secret)).scopes == ("servers:read",)


async def test_only_admins_act_for_other_users(svc: IdentityService, admin: Principal) -> None:
    dev = await _principal_with_role(svc, admin, "dev@example.com", "developer")
    with pytest.raises(Forbidden):
        await svc.create_key(dev, KeyCreate(name="x", user_id=admin.user_id))
    with pytest.raises(Forbidden):
        await svc.list_keys(
            dev, user_id=None, all_users=True, include_revoked=False, limit=10, offset=0
        )
    with pytest.raises(NotFound):  # another user's key is invisible, not "forbidden"
        await svc.revoke_key(dev, admin.key_id or "")
    with pytest.raises(Forbidden):
        await svc.create_user(dev, UserCreate(email="x@example.com"))
    keys, total = await svc.list_keys(
        admin, user_id=None, all_users=True, include_revoked=False, limit=10, offset=0
    )
    assert total == len(keys) == 2


async def test_key_expiry_validation(svc: IdentityService, admin: Principal) -> None:
    with pytest.raises(InvalidInput, match="not both"):
        await svc.create_key(
            admin,
            KeyCreate(name="x", expires_in_days=1, expires_at=datetime.now(UTC) + timedelta(1)),
        )
    with pytest.raises(InvalidInput, match="past"):
        await svc.create_key(
            admin, KeyCreate(name="x", expires_at=datetime.now(UTC) - timedelta(days=1))
        )
    key, _ = await svc.create_key(admin, KeyCreate(name="x", expires_in_days=30))
    assert key.expires_at is not None
    assert timedelta(days=29) < key.expires_at - datetime.now(UTC) <= timedelta(days=30)


async def test_an_expiring_key_cannot_mint_a_longer_lived_key(
    svc: IdentityService, admin: Principal
) -> None:
    """A key expiring in a day may not mint a key without expiry or one lasting ten years."""
    _, secret = await svc.create_key(admin, KeyCreate(name="day", expires_in_days=1))
    short = await svc.authenticate(secret)
    with pytest.raises(InvalidInput, match="cannot outlive") as never:
        await svc.create_key(short, KeyCreate(name="forever"))
    assert never.value.details["errors"][0]["field"] == "expires_at"
    with pytest.raises(InvalidInput, match="cannot outlive") as decade:
        await svc.create_key(short, KeyCreate(name="decade", expires_in_days=3650))
    assert decade.value.details["errors"][0]["field"] == "expires_in_days"
    later = datetime.now(UTC) + timedelta(days=2)
    with pytest.raises(InvalidInput, match="cannot outlive"):
        await svc.create_key(short, KeyCreate(name="later", expires_at=later))
    # The rule is about the minting key: an expiring admin key cannot widen another
    # user's key either.
    dev = await svc.create_user(admin, UserCreate(email="dev@example.com"))
    with pytest.raises(InvalidInput, match="cannot outlive"):
        await svc.create_key(short, KeyCreate(name="for-dev", user_id=dev.id))
    # Within the limit is fine, for oneself and for others.
    sooner = datetime.now(UTC) + timedelta(hours=12)
    key, _ = await svc.create_key(short, KeyCreate(name="ok", expires_at=sooner))
    assert key.expires_at is not None and abs(key.expires_at - sooner) < timedelta(seconds=1)
    await svc.create_key(short, KeyCreate(name="ok-dev", user_id=dev.id, expires_at=sooner))
    # A key without expiry mints anything.
    never_key, _ = await svc.create_key(admin, KeyCreate(name="free"))
    assert never_key.expires_at is None


async def test_users_conflict_and_self_demotion(svc: IdentityService, admin: Principal) -> None:
    await svc.create_user(admin, UserCreate(email="a@example.com"))
    with pytest.raises(Conflict):
        await svc.create_user(admin, UserCreate(email="A@example.com"))
    with pytest.raises(Conflict, match="yourself"):
        await svc.update_user(admin, admin.user_id, UserUpdate(role="viewer"))  # type: ignore[arg-type]


async def test_team_membership_rules(svc: IdentityService, admin: Principal) -> None:
    owner = await _principal_with_role(svc, admin, "owner@example.com", "developer")
    member = await _principal_with_role(svc, admin, "member@example.com", "developer")
    outsider = await _principal_with_role(svc, admin, "out@example.com", "developer")
    team = await svc.create_team(admin, TeamCreate(name="data"))
    with pytest.raises(Conflict):
        await svc.create_team(admin, TeamCreate(name="data"))
    with pytest.raises(Forbidden):
        await svc.create_team(owner, TeamCreate(name="mine"))
    await svc.add_member(admin, team.id, MemberAdd(user_id=owner.user_id, role="owner"))
    # an owner manages members; a plain member and an outsider do not
    view = await svc.add_member(owner, "data", MemberAdd(user_id=member.user_id))
    assert {u.email for _, u in view.members or []} == {"owner@example.com", "member@example.com"}
    with pytest.raises(Forbidden):
        await svc.add_member(member, team.id, MemberAdd(user_id=outsider.user_id))
    # outsiders cannot even see the team
    with pytest.raises(NotFound):
        await svc.get_team(outsider, team.id)
    teams, total = await svc.list_teams(outsider, limit=10, offset=0)
    assert total == 0 and teams == []
    teams, total = await svc.list_teams(member, limit=10, offset=0)
    assert [t.name for t in teams] == ["data"]
    await svc.remove_member(owner, team.id, member.user_id)
    with pytest.raises(NotFound):
        await svc.remove_member(owner, team.id, member.user_id)
