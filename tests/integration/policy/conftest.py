"""A gateway with two servers on one real backend process (tests/fixtures/http_backend.py):
``fix`` and ``fix2``, so a rule or limit on one can be seen to leave the other alone."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from tests.conftest import create_pg_database, drop_pg_database
from tests.integration.mcp.test_endpoint import _new_key
from tests.support import BOOT, Server, free_port, spawn_http

BACKEND = Path(__file__).resolve().parents[2] / "fixtures" / "http_backend.py"
AUTH = {"Authorization": f"Bearer {BOOT}"}
REDIS = os.environ.get("MCPGW_TEST_REDIS_URL", "redis://127.0.0.1:6379")


@pytest.fixture(scope="module")
def backend_url() -> Iterator[str]:
    port = free_port()
    proc: subprocess.Popen[bytes] = spawn_http([sys.executable, str(BACKEND), str(port)], port)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.kill()
    proc.wait()


def register(server: Server, backend: str, *names: str) -> None:
    for name in names:
        r = httpx.post(
            f"{server.url}/api/v1/servers",
            params={"wait": True},
            json={"name": name, "type": "remote", "config": {"url": backend}},
            headers=AUTH,
            timeout=60,
        )
        assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def gateway(module_server_factory: type[Server], backend_url: str) -> Server:
    server = module_server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_ALLOW_PRIVATE_URLS="true",
        MCPGW_AUDIT_FLUSH_SECONDS="0.05",
        MCPGW_INTERFACE_MODE="list",  # every tool listed: what a policy hides shows
    )
    server.wait_ready()
    register(server, backend_url, "fix", "fix2")
    return server


@pytest.fixture(scope="module")
def developer(gateway: Server) -> str:
    """A developer's key (developers may call tools)."""
    return _new_key(gateway, "developer")


def apply(server: Server, document: dict[str, Any] | str, **params: Any) -> httpx.Response:
    """PUT the policy (a dict as JSON, a string as YAML)."""
    if isinstance(document, str):
        body, kind = document.encode(), "application/yaml"
    else:
        body, kind = yaml.safe_dump(document).encode(), "application/yaml"
    return httpx.put(
        f"{server.url}/api/v1/policies",
        content=body,
        params=params,
        headers={**AUTH, "Content-Type": kind},
        timeout=30,
    )


def applied(server: Server, document: dict[str, Any] | str) -> dict[str, Any]:
    r = apply(server, document)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture
def shared(backend_url: str) -> Iterator[dict[str, str]]:
    """One PostgreSQL database and one Redis (a key prefix of its own) for two gateways."""
    client = redis.Redis.from_url(REDIS)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is needed at {REDIS}: {exc}", pytrace=False)
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    url = create_pg_database("mcpgw_limits")
    yield {
        "MCPGW_DATABASE_URL": url,
        "MCPGW_AUTO_MIGRATE": "true",
        "MCPGW_REDIS_URL": REDIS,
        "MCPGW_RATE_LIMIT_KEY_PREFIX": prefix,
        "MCPGW_BOOTSTRAP_API_KEY": BOOT,
        "MCPGW_ALLOW_PRIVATE_URLS": "true",
        "MCPGW_SECRET_KEY": "k" * 43,
    }
    drop_pg_database(url)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()
