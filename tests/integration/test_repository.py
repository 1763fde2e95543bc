"""Repository queries against both SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from gateway.auth.keys import generate_key, hash_key
from gateway.auth.models import ApiKey, Team, TeamMember, User
from gateway.auth.repository import IdentityRepository
from gateway.db import Database


async def _user(db: Database, email: str, role: str = "developer") -> User:
    async with db.session() as s:
        user = User(email=email, name=email.split("@")[0], role=role)
        await IdentityRepository(s).add(user)
        return user


async def test_users_round_trip_with_utc_times(database: Database) -> None:
    before = datetime.now(UTC)
    user = await _user(database, "ada@example.com")
    async with database.session() as s:
        repo = IdentityRepository(s)
        loaded = await repo.get_user(user.id)
        assert loaded is not None
        assert loaded.email == "ada@example.com"
        assert loaded.created_at.tzinfo is not None
        assert before - timedelta(seconds=5) <= loaded.created_at <= datetime.now(UTC)
        assert (await repo.get_user_by_email("ADA@example.com")) is not None
        assert await repo.count_users() == 1


async def test_email_is_unique(database: Database) -> None:
    await _user(database, "dup@example.com")
    with pytest.raises(IntegrityError):
        await _user(database, "dup@example.com")


async def test_list_users_pages_in_creation_order(database: Database) -> None:
    for i in range(5):
        await _user(database, f"u{i}@example.com")
    async with database.session() as s:
        page, total = await IdentityRepository(s).list_users(limit=2, offset=2)
    assert total == 5
    assert [u.email for u in page] == ["u2@example.com", "u3@example.com"]


async def test_teams_and_members(database: Database) -> None:
    ada = await _user(database, "ada@example.com")
    bob = await _user(database, "bob@example.com")
    async with database.session() as s:
        repo = IdentityRepository(s)
        team = Team(name="platform", description="")
        await repo.add(team)
        await repo.add(TeamMember(team_id=team.id, user_id=ada.id, role="owner"))
        await repo.add(TeamMember(team_id=team.id, user_id=bob.id))
        team_id = team.id
    async with database.session() as s:
        repo = IdentityRepository(s)
        members = await repo.list_members(team_id)
        assert [(m.role, u.email) for m, u in members] == [
            ("owner", "ada@example.com"),
            ("member", "bob@example.com"),
        ]
        teams, total = await repo.list_teams(limit=10, offset=0, member_id=bob.id)
        assert (total, [t.name for t in teams]) == (1, ["platform"])
        assert [(t.name, r) for t, r in await repo.teams_of_user(ada.id)] == [("platform", "owner")]


async def test_keys_by_hash_and_cascade(database: Database) -> None:
    user = await _user(database, "k@example.com")
    secret = generate_key()
    async with database.session() as s:
        repo = IdentityRepository(s)
        await repo.add(
            ApiKey(user_id=user.id, name="k", prefix="p", key_hash=hash_key(secret), scopes=["*"])
        )
    async with database.session() as s:
        repo = IdentityRepository(s)
        key = await repo.get_key_by_hash(hash_key(secret))
        assert key is not None
        assert key.scopes == ["*"]
        assert await repo.get_key_by_hash(hash_key(generate_key())) is None
        doomed = await repo.get_user(user.id)
        assert doomed is not None
        await repo.delete(doomed)
    async with database.session() as s:
        assert await IdentityRepository(s).get_key(key.id) is None  # ON DELETE CASCADE


async def test_touch_keys_only_moves_forward(database: Database) -> None:
    user = await _user(database, "t@example.com")
    async with database.session() as s:
        key = ApiKey(user_id=user.id, name="k", prefix="p", key_hash="a" * 64, scopes=["*"])
        await IdentityRepository(s).add(key)
    later = datetime(2030, 1, 1, tzinfo=UTC)
    earlier = datetime(2029, 1, 1, tzinfo=UTC)
    async with database.session() as s:
        await IdentityRepository(s).touch_keys({key.id: later})
    async with database.session() as s:
        await IdentityRepository(s).touch_keys({key.id: earlier})
    async with database.session() as s:
        loaded = await IdentityRepository(s).get_key(key.id)
        assert loaded is not None
        assert loaded.last_used_at == later
