"""The data directory and the secrets in it are private (0700/0600), whatever the umask."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.config import Settings
from gateway.datadir import open_private_log
from tests.conftest import BOOTSTRAP_KEY
from tests.support import BOOT, MCPGW, Server, _env


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _assert_private(data: Path) -> None:
    assert _mode(data) == 0o700, oct(_mode(data))
    files = [data / "secret.key", data / "mcpgw.db"]
    files += [p for p in (data / "mcpgw.db-wal", data / "mcpgw.db-shm") if p.exists()]
    for path in files:
        assert _mode(path) == 0o600, f"{path.name}: {oct(_mode(path))}"


def test_serve_on_a_fresh_data_dir_keeps_it_private(tmp_path: Path) -> None:
    """A real `mcpgw serve` under the common umask 022 (which gave 0755/0644 before)."""
    data = tmp_path / "data"
    with _umask(0o022):  # inherited by the child
        server = Server(tmp_path, MCPGW_BOOTSTRAP_API_KEY=BOOT)
    try:
        server.wait_ready()
        r = httpx.post(
            f"{server.url}/api/v1/keys",
            json={"name": "wal"},
            headers={"Authorization": f"Bearer {BOOT}"},
        )
        assert r.status_code == 201, r.text
        # Checked while serving: SQLite removes -wal/-shm when the last connection closes.
        assert (data / "mcpgw.db-wal").exists()
        _assert_private(data)
    finally:
        server.stop()


async def test_modes_hold_under_an_empty_umask(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, bootstrap_api_key=BOOTSTRAP_KEY)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    with _umask(0):
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client,
        ):
            r = await client.post(
                "/api/v1/keys",
                json={"name": "x"},
                headers={"Authorization": f"Bearer {BOOTSTRAP_KEY}"},
            )
            assert r.status_code == 201, r.text
            _assert_private(data)
            # Where stdio backends' stderr logs go: private before any is written.
            assert _mode(data / "logs") == _mode(data / "logs" / "servers") == 0o700
        with open_private_log(data / "logs" / "servers" / "demo.log") as log:
            log.write("stderr of a backend\n")
    assert _mode(data / "logs") == _mode(data / "logs" / "servers") == 0o700
    assert _mode(data / "logs" / "servers" / "demo.log") == 0o600


async def test_an_existing_loose_data_dir_is_tightened_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    (data / "logs" / "servers").mkdir(parents=True)
    for path in (data, data / "logs", data / "logs" / "servers"):
        path.chmod(0o755)
    (data / "secret.key").write_text("k" * 64)
    (data / "logs" / "servers" / "old.log").write_text("x")
    for path in (data / "secret.key", data / "logs" / "servers" / "old.log"):
        path.chmod(0o644)
    settings = Settings(data_dir=data, bootstrap_api_key=BOOTSTRAP_KEY)
    app = create_app(settings)
    # A first start creates the database (0600 now); make it loose as an old version did.
    async with app.router.lifespan_context(app):
        pass
    for name in ("mcpgw.db", "mcpgw.db-wal"):
        (data / name).touch()
        (data / name).chmod(0o644)
    data.chmod(0o755)
    again = create_app(settings)
    with caplog.at_level(logging.WARNING, logger="gateway.datadir"):
        async with again.router.lifespan_context(again):
            _assert_private(data)
    assert _mode(data / "logs" / "servers" / "old.log") == 0o600
    assert _mode(data / "logs" / "servers") == 0o700
    record = next(r for r in caplog.records if "made the data directory private" in r.message)
    assert str(data / "secret.key") in record.paths  # type: ignore[attr-defined]


def test_cli_create_key_on_a_fresh_data_dir(tmp_path: Path) -> None:
    """The offline bootstrap path still works and creates the database 0600."""
    r = subprocess.run(
        [MCPGW, "admin", "create-key", "--user", "ops@example.com", "--role", "admin"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
        umask=0,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("mgw_live_")
    data = tmp_path / "data"
    assert _mode(data) == 0o700
    assert _mode(data / "mcpgw.db") == 0o600
