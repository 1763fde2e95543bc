"""Shared fixtures: a database per backend (SQLite and the real PostgreSQL), the app, a client.

PostgreSQL is not optional: the suite fails, saying how to start it, when it is
unreachable. Each run creates its own database and drops it at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import text

from gateway import migrate
from gateway.app import create_app
from gateway.config import Settings, normalize_database_url
from gateway.db import Database
from gateway.models import metadata

PG_ADMIN_URL = os.environ.get(
    "MCPGW_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BOOTSTRAP_KEY = "mgw_live_test_bootstrap_key_0123456789"
PG_HINT = (
    "PostgreSQL is needed by the test suite and is not reachable at {url}: {err}. "
    "Start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
    "or point MCPGW_TEST_DATABASE_URL at a server where the user may CREATE DATABASE."
)


def _pg_url_for(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


def _pg_admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def create_pg_database(prefix: str = "mcpgw_test") -> str:
    """Create a fresh, empty PostgreSQL database; returns its plain URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(PG_HINT.format(url=PG_ADMIN_URL, err=exc), pytrace=False)
    return _pg_url_for(name)


def drop_pg_database(url: str) -> None:
    name = url.rpartition("/")[2]
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _migrate(url: str) -> None:
    db = Database(normalize_database_url(url, Path(".")))
    try:
        await migrate.upgrade(db.engine)
    finally:
        await db.dispose()


@pytest.fixture(scope="session")
def pg_run_url() -> Iterator[str]:
    """One migrated PostgreSQL database for the whole run."""
    url = create_pg_database()
    asyncio.run(_migrate(url))
    yield url
    drop_pg_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A migrated, empty database of the current backend (plain URL)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'gw.db'}"
        asyncio.run(_migrate(url))
        return url
    return str(request.getfixturevalue("pg_run_url"))


async def _wipe(db: Database) -> None:
    async with db.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            await conn.execute(text(f'DELETE FROM "{table.name}"'))  # noqa: S608


@pytest.fixture
async def database(db_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(normalize_database_url(db_url, tmp_path))
    await _wipe(db)
    yield db
    await _wipe(db)
    await db.dispose()


def make_settings(db_url: str, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": db_url,
        "data_dir": tmp_path / "data",
        "bootstrap_api_key": BOOTSTRAP_KEY,
        "auto_migrate": True,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


class AppHarness:
    """The app with its lifespan running, and an httpx client bound to it."""

    def __init__(self, app: object, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    def auth(self, key: str = BOOTSTRAP_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[AppHarness]:
    """The app built from ``settings``, its lifespan running, with a client bound to it."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client,
    ):
        yield AppHarness(app, client)


@pytest.fixture
async def harness(database: Database, db_url: str, tmp_path: Path) -> AsyncIterator[AppHarness]:
    async with running_app(make_settings(db_url, tmp_path)) as found:
        yield found


from tests.support import (  # noqa: E402, F401  (fixtures re-exported for all tests)
    module_server_factory,
    server_factory,
)
from tests.support_oidc import (  # noqa: E402, F401  (fixtures re-exported for all tests)
    module_oidc_provider_factory,
    oidc_fixture_dir,
    oidc_provider_factory,
)

# --- markers: what a test module needs beyond this process -----------------------------
# Read off each module's source (once per module), so a new test is classified without
# anyone remembering to mark it: `make test-fast` runs what needs none of these.
_NEEDS = {
    "subprocess": (
        "Server(",
        "server_factory",
        "spawn_http",
        "subprocess",
        "create_subprocess",
        "stdio_client",
        "bwrap",
        "LocalProvider",
        "git_server",
        "oidc_provider",
    ),
    "docker": ("docker",),
    "kube": ("kubernetes", "kube_"),
    "network": ("npx", "uvx", "npm ci", "node24", "chromium", "oidc_provider"),
}
_SLOW_DIRS = ("conformance", "e2e", "interop")  # always beyond this process
_marks_by_module: dict[Path, set[str]] = {}


def _module_needs(path: Path) -> set[str]:
    found = _marks_by_module.get(path)
    if found is None:
        found = set()
        if "unit" not in path.parts:  # unit tests run in this process by definition
            text = path.read_text(encoding="utf-8") if path.suffix == ".py" else ""
            found = {mark for mark, hints in _NEEDS.items() if any(h in text for h in hints)}
            if re.search(r"\b(Server|MCPGW)\b", text):  # tests.support's gateway process
                found.add("subprocess")
        if any(part in _SLOW_DIRS for part in path.parts):
            found.add("subprocess")
        _marks_by_module[path] = found
    return found


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for mark in sorted(_module_needs(item.path)):
            item.add_marker(mark)
