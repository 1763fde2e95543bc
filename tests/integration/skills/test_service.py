"""SkillService and SkillRepository on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway.auth.models import User
from gateway.auth.principal import Principal
from gateway.builders import build_server_service
from gateway.db import Database
from gateway.errors import Forbidden, InvalidInput
from skills.archive import UnsafeArchive
from skills.models import Skill, SkillBlob, SkillVersion
from skills.repository import SkillRepository
from skills.service import SkillService
from tests.conftest import make_settings
from tests.support_skills import FIXTURES, tree


async def store_from_directory(service: SkillService, *args: Any, **kwargs: Any) -> Skill:
    """The stored skill row, as the importer's ``store_directory`` leaves it."""
    return (await service.store_directory(*args, **kwargs)).view.skill


async def _principal(db: Database, email: str, role: str = "admin") -> Principal:
    async with db.session() as session:
        user = User(email=email, name=email, role=role)
        session.add(user)
        await session.flush()
        return Principal(user.id, email, email, role, None, ("*",))


@pytest.fixture
async def service(database: Database, db_url: str, tmp_path: Path) -> AsyncIterator[SkillService]:
    settings = make_settings(db_url, tmp_path)
    servers = build_server_service(settings, database)
    yield SkillService(database, servers, settings)
    await servers.pool.close()


async def test_store_from_directory_versions_only_on_change(
    service: SkillService, database: Database, tmp_path: Path
) -> None:
    admin = await _principal(database, "admin@example.com")
    root = tmp_path / "checkout" / "csv-insights"
    shutil.copytree(FIXTURES / "valid" / "csv-insights", root)
    source = {"kind": "git", "url": "https://example.com/r.git", "commit": "a" * 40}
    row = await store_from_directory(service, admin, root, source=source, strict=True)
    assert (row.name, row.version, row.source) == ("csv-insights", 1, source)
    view = await service.get(admin, "csv-insights")
    assert {f.path: (f.sha256, f.executable) for f in view.files} == tree(root)
    assert view.version.skill_metadata == {
        "author": "data-team",
        "version": "2.0",
        "category": "analytics",
    }

    again = await store_from_directory(
        service, admin, root, source={**source, "commit": "b" * 40}, strict=True
    )
    assert again.version == 1  # same digests: no new version
    (root / "references").mkdir()
    (root / "references" / "notes.md").write_text("new file\n")
    changed = await store_from_directory(
        service, admin, root, source={**source, "commit": "c" * 40}, strict=True
    )
    assert changed.version == 2 and changed.source["commit"] == "c" * 40
    (root / "scripts" / "summarize.py").chmod(0o644)  # a mode change is a change too
    assert (
        await store_from_directory(service, admin, root, source=source, strict=True)
    ).version == 3
    versions = [v.version for v, _, _ in (await service.get(admin, "csv-insights")).versions]
    assert versions == [3, 2, 1]


async def test_store_from_directory_validates_like_uploads(
    service: SkillService, database: Database, tmp_path: Path
) -> None:
    admin = await _principal(database, "admin@example.com")
    with pytest.raises(InvalidInput) as caught:
        await store_from_directory(
            service,
            admin,
            FIXTURES / "invalid" / "unknown-field",
            source={"kind": "manual"},
            strict=True,
        )
    assert caught.value.code == "invalid_skill"
    assert caught.value.details["errors"][0]["field"] == "version"
    row = await store_from_directory(
        service,
        admin,
        FIXTURES / "invalid" / "unknown-field",
        source={"kind": "manual"},
        strict=False,
    )
    assert row.version == 1
    root = tmp_path / "linked"
    root.mkdir()
    (root / "SKILL.md").write_text("---\nname: linked\ndescription: d\n---\n")
    (root / "evil").symlink_to("/etc/passwd")
    with pytest.raises(UnsafeArchive, match="symbolic link"):
        await store_from_directory(service, admin, root, source={"kind": "manual"}, strict=True)
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(Skill)) == 1


async def test_writes_need_permission(service: SkillService, database: Database) -> None:
    viewer = await _principal(database, "v@example.com", "viewer")
    with pytest.raises(Forbidden, match="skills:write"):
        await store_from_directory(
            service,
            viewer,
            FIXTURES / "valid" / "hello-world",
            source={"kind": "manual"},
            strict=True,
        )
    narrowed = Principal(viewer.user_id, "v", "v", "developer", "k", ("skills:read",))
    with pytest.raises(Forbidden):
        await service.upload(narrowed, b"", "x.zip")


async def test_repository_blobs_are_idempotent_and_collected(database: Database) -> None:
    blobs = {hashlib.sha256(d).hexdigest(): d for d in (b"one", b"two", b"\x00\xff binary")}

    async def put() -> None:
        async with database.session() as session:
            await SkillRepository(session).put_blobs(blobs)

    # concurrent writers of the same contents: insert-or-ignore, no error, one row each
    await asyncio.gather(put(), put(), put())
    async with database.session() as session:
        repo = SkillRepository(session)
        assert await repo.blobs(blobs) == blobs
        assert await repo.blob(hashlib.sha256(b"two").hexdigest()) == b"two"
        assert await repo.collect_garbage() == 3  # no file refers to them
        assert await session.scalar(select(func.count()).select_from(SkillBlob)) == 0


async def test_usage_is_added_atomically(service: SkillService, database: Database) -> None:
    admin = await _principal(database, "admin@example.com")
    await store_from_directory(
        service, admin, FIXTURES / "valid" / "hello-world", source={"kind": "manual"}, strict=True
    )
    other = SkillService(database, service.servers, service.settings)  # a second replica
    for _ in range(5):
        service.record_load("hello-world")
        other.record_load("hello-world")
    other.record_download("hello-world")
    service.record_load("no-such-skill")  # counted, then dropped by the UPDATE: no error
    await asyncio.gather(service.usage.flush(), other.usage.flush())
    stats = await service.stats(admin, "hello-world")
    assert (stats["loads"], stats["downloads"]) == (10, 1)
    async with database.session() as session:
        versions = await session.scalar(select(func.count()).select_from(SkillVersion))
        assert versions == 1
