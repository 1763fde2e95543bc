"""Fixtures for pillar 3: a gateway with real sandbox providers (bubblewrap, Docker)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.db import Database
from tests.conftest import AppHarness, make_settings

BASE_IMAGE = "mcpgw-sandbox-base:bookworm"
PYTHON_IMAGE = "mcpgw-sandbox-python:latest"
ENGINE_HINT = (
    "a Docker engine is needed: apt-get install -y docker.io && "
    "(dockerd >/var/log/dockerd.log 2>&1 &)"
)


def docker_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def need_bwrap() -> None:
    if shutil.which("bwrap") is None:
        pytest.fail(
            "bubblewrap is needed for the local sandbox provider: apt-get install -y bubblewrap"
        )


@pytest.fixture(scope="session")
def python_image() -> str:
    """The python template image, built from sandboxes/images/python (once per run)."""
    if shutil.which("docker") is None or docker_cli("info", timeout=20).returncode != 0:
        pytest.fail(ENGINE_HINT)
    if docker_cli("image", "inspect", BASE_IMAGE).returncode != 0:
        pytest.fail(
            f"the base image {BASE_IMAGE} is missing: run scripts/docker-base-image.sh "
            "(needs debootstrap)"
        )
    from sandboxes.images import build_template_image

    build_template_image("python")
    return PYTHON_IMAGE


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """Provider tests run on the embedded default; API tests opt into both databases."""
    return str(request.param)


class Sandboxes(AppHarness):
    """The app plus helpers for the sandbox API."""

    async def create(self, key: str | None = None, **body: Any) -> dict[str, Any]:
        r = await self.client.post(
            "/api/v1/sandboxes",
            json=body,
            headers=self.auth(key) if key else self.auth(),
            timeout=120,
        )
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    async def exec(self, sandbox_id: str, key: str | None = None, **body: Any) -> dict[str, Any]:
        r = await self.client.post(
            f"/api/v1/sandboxes/{sandbox_id}/exec",
            json=body,
            headers=self.auth(key) if key else self.auth(),
            timeout=300,
        )
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def py(self, sandbox_id: str, code: str, **extra: Any) -> dict[str, Any]:
        return await self.exec(sandbox_id, code=code, language="python", **extra)

    async def put(self, sandbox_id: str, path: str, data: bytes) -> httpx.Response:
        return await self.client.put(
            f"/api/v1/sandboxes/{sandbox_id}/files",
            params={"path": path},
            content=data,
            headers=self.auth(),
        )

    async def get(self, sandbox_id: str, path: str = "") -> httpx.Response:
        return await self.client.get(
            f"/api/v1/sandboxes/{sandbox_id}/files", params={"path": path}, headers=self.auth()
        )

    async def action(self, sandbox_id: str, action: str) -> httpx.Response:
        return await self.client.post(
            f"/api/v1/sandboxes/{sandbox_id}/{action}", headers=self.auth(), timeout=120
        )

    async def destroy(self, sandbox_id: str) -> httpx.Response:
        return await self.client.delete(
            f"/api/v1/sandboxes/{sandbox_id}", headers=self.auth(), timeout=120
        )

    @property
    def service(self) -> Any:
        return self.app.state.gw.sandboxes  # type: ignore[attr-defined]


SandboxFactory = Callable[..., Any]


@pytest.fixture
async def sbx_factory(
    database: Database, db_url: str, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """Start gateways with sandbox settings; destroys every sandbox they made at the end."""
    started: list[tuple[Any, Any, Sandboxes]] = []

    async def start(**overrides: Any) -> Sandboxes:
        values: dict[str, Any] = {
            "sandbox_dir": tmp_path / "sandboxes",
            "sandbox_memory_mb": 256,
            "sandbox_pids": 128,
            "sandbox_reaper_interval_seconds": 3600,
        }
        values.update(overrides)
        app = create_app(make_settings(db_url, tmp_path, **values))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(transport=transport, base_url="http://gw.test")
        harness = Sandboxes(app, client)
        started.append((lifespan, client, harness))
        return harness

    yield start
    for lifespan, client, harness in reversed(started):
        service = harness.service
        rows, _ = await service.list_sandboxes(_admin(), all_users=True, limit=1000)
        for row in rows:
            # best effort; a leak shows in the provider tests' own checks
            with contextlib.suppress(Exception):
                await service.destroy(None, row.id, row=row)
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


def _admin() -> Any:
    from gateway.auth.principal import Principal

    return Principal(
        user_id="cleanup",
        email="cleanup@localhost",
        name="",
        role="admin",
        key_id=None,
        scopes=("*",),
    )


@pytest.fixture
async def sbx(sbx_factory: Callable[..., Any]) -> Sandboxes:
    need_bwrap()
    return await sbx_factory()  # type: ignore[no-any-return]
