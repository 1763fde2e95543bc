"""Migrations on both dialects: head, down to base, up again, and no drift from the models."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from gateway import migrate
from gateway.config import normalize_database_url
from gateway.db import Database
from gateway.models import metadata
from tests.conftest import create_pg_database, drop_pg_database

TABLES = {
    "users",
    "teams",
    "team_members",
    "api_keys",
    "servers",
    "server_versions",
    "catalog_entries",
    "skills",
    "skill_versions",
    "skill_files",
    "skill_blobs",
    "skill_links",
    "sandboxes",
    "sandbox_templates",
    "audit_events",
    "audit_boundaries",
    "jobs",
    "job_events",
}


@pytest.fixture
def empty_db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    url = create_pg_database("mcpgw_migr")
    yield url
    drop_pg_database(url)


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _drift(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


async def test_upgrade_downgrade_upgrade(empty_db_url: str, tmp_path: Path) -> None:
    db = Database(normalize_database_url(empty_db_url, tmp_path))
    try:
        assert await migrate.current_revision(db.engine) is None
        await migrate.upgrade(db.engine)
        assert await migrate.current_revision(db.engine) == migrate.head_revision()
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_tables) >= TABLES
            assert await conn.run_sync(_drift) == [], "models and migrations disagree"
            # a fresh install comes with the essentials bundle, enabled
            rows = (await conn.execute(text("select name, type, enabled from servers"))).all()
            assert [tuple(r) for r in rows] == [("essentials", "bundle", True)]

        await migrate.downgrade(db.engine, "base")
        assert await migrate.current_revision(db.engine) is None
        async with db.engine.connect() as conn:
            assert not (await conn.run_sync(_tables) & TABLES)

        await migrate.upgrade(db.engine)
        assert await migrate.current_revision(db.engine) == migrate.head_revision()
    finally:
        await db.dispose()


def test_migrations_dir_is_found() -> None:
    assert (migrate.migrations_dir() / "env.py").is_file()
    assert migrate.head_revision() is not None


def test_head_revision_matches_alembic() -> None:
    from alembic.script import ScriptDirectory

    assert (
        migrate.head_revision()
        == ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    )


async def test_sandbox_events_fold_into_the_audit_trail(empty_db_url: str, tmp_path: Path) -> None:
    """0006 moves the sandboxes' own audit events into audit_events (their history kept,
    chained as one stream that verifies) and back on downgrade."""
    from gateway.audit.service import AuditLog

    db = Database(normalize_database_url(empty_db_url, tmp_path))
    try:
        await migrate.upgrade(db.engine, "0005")
        async with db.engine.begin() as conn:
            for i, (action, command, exit_code) in enumerate(
                [("create", None, None), ("exec", "echo ***", 0), ("exec", "false", 1)]
            ):
                await conn.execute(
                    text(
                        "INSERT INTO sandbox_events (id, sandbox_id, user_id, action, command,"
                        " path, exit_code, duration_ms, detail, at) VALUES (:id, 'sb1', 'u1',"
                        " :action, :command, NULL, :code, 12.5, :detail, :at)"
                    ),
                    {
                        "id": f"00000000-0000-0000-0000-00000000000{i}",
                        "action": action,
                        "command": command,
                        "code": exit_code,
                        "detail": '{"env": ["A"]}',
                        "at": f"2026-11-2{i} 10:00:00.123456",
                    },
                )
        await migrate.upgrade(db.engine)
        async with db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT action, target, actor_user_id, arguments, detail, outcome,"
                        " latency_ms, seq FROM audit_events ORDER BY seq"
                    )
                )
            ).all()
        assert [(r[0], r[1], r[2], r[5], r[6], r[7]) for r in rows] == [
            ("sandbox.create", "sb1", "u1", "ok", 12.5, 1),
            ("sandbox.exec", "sb1", "u1", "ok", 12.5, 2),
            ("sandbox.exec", "sb1", "u1", "tool_error", 12.5, 3),
        ]
        assert rows[1][3] == '{"command":"echo ***"}'
        assert rows[1][4] == '{"env":["A"],"exit_code":0}'
        report = await AuditLog(db, None, enabled=False).verify()
        assert (report.ok, report.rows, report.streams) == (True, 3, 1)

        await migrate.downgrade(db.engine, "0005")
        async with db.engine.connect() as conn:
            back = (
                await conn.execute(
                    text("SELECT action, command, exit_code FROM sandbox_events ORDER BY at")
                )
            ).all()
        assert [tuple(r) for r in back] == [
            ("create", None, None),
            ("exec", "echo ***", 0),
            ("exec", "false", 1),
        ]
    finally:
        await db.dispose()
