"""The token vault's upkeep and its other credential kind, on both databases: a static
secret per user (sent in the server's header, masked in results); the refresher's
lease (one replica at a time); ``Retry-After`` and repeated ``invalid_grant`` from a
token endpoint.

The token endpoint here is a stand-in on loopback (a few lines of asyncio answering
503 + ``Retry-After`` or ``invalid_grant``): oidc-provider never answers 429/503, and
what is under test is the gateway's reaction to those answers. The real provider's
``invalid_grant`` after a revocation is in test_connections.py."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.db import Database, utcnow
from gateway.servers.connections.models import Connection
from gateway.servers.connections.oauth import Tokens
from gateway.servers.connections.refresher import refresh_one, release_lease, take_lease
from gateway.servers.models import McpServer
from tests.conftest import AppHarness, make_settings, running_app
from tests.integration.auth.test_connections import user_key
from tests.support import free_port, spawn_http

BACKEND = Path(__file__).resolve().parents[2] / "fixtures" / "http_backend.py"


@pytest.fixture(scope="module")
def keyed_backend() -> Iterator[str]:
    port = free_port()
    proc = spawn_http([sys.executable, str(BACKEND), str(port)], port)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.kill()
    proc.wait()


@pytest.fixture
async def gateway(database: Database, db_url: str, tmp_path: Path) -> AsyncIterator[AppHarness]:
    settings = make_settings(
        db_url,
        tmp_path,
        allow_private_urls=True,
        connections_refresh_interval_seconds=3600,  # refreshes run when the test says
        connections_max_refresh_failures=2,
    )
    async with running_app(settings) as found:
        yield found


async def execute(h: AppHarness, key: str, tool: str) -> dict[str, object]:
    r = await h.client.post(
        "/api/v1/tools/execute",
        json={"tool": tool, "arguments": {}},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200, r.text
    found: dict[str, object] = r.json()
    return found


async def test_a_static_secret_per_user(gateway: AppHarness, keyed_backend: str) -> None:
    r = await gateway.client.post(
        "/api/v1/servers",
        json={
            "name": "keyed",
            "type": "remote",
            "config": {
                "url": keyed_backend,
                "credentials": {
                    "kind": "secret",
                    "header": "X-Api-Key",
                    "format": "{secret}",
                    "instructions": "Tokens are at https://keys.example/settings",
                },
            },
        },
        headers=gateway.auth(),
    )
    assert r.status_code == 201, r.text
    alice_id, alice = await user_key(gateway, "alice@corp.example")
    _, bob = await user_key(gateway, "bob@corp.example")
    secret = "alice-own-api-token-0123456789"
    auth = {"Authorization": f"Bearer {alice}"}
    r = await gateway.client.post("/api/v1/connections/keyed", json={}, headers=auth)
    assert r.status_code == 422 and "takes a secret" in r.json()["message"]
    r = await gateway.client.post(
        "/api/v1/connections/keyed", json={"secret": secret}, headers=auth
    )
    assert r.status_code == 201, r.text
    assert secret not in r.text and r.json()["connection"]["status"] == "active"
    # The backend echoes the header it got: Alice's own secret, masked in the result.
    found = await execute(gateway, alice, "keyed__whoami")
    assert found["isError"] is False and found["content"] == [
        {"type": "text", "text": "my key is ***"}
    ]
    state = gateway.app.state.gw  # type: ignore[attr-defined]
    sessions = state.servers.pool.get("keyed")._sessions
    assert [r.spec.secret_headers["X-Api-Key"] for _, r in sessions.values()] == [secret]
    # Bob has none: he is told how to send his.
    found = await execute(gateway, bob, "keyed__whoami")
    assert found["isError"] is True
    text = found["content"][0]["text"]  # type: ignore[index]
    assert 'POST /api/v1/connections/keyed with {"secret": "<your token>"}' in text
    assert "Tokens are at https://keys.example/settings" in text  # the server's instructions
    assert state.connections.vault.get("keyed", alice_id) is not None


async def test_one_lease_holder_at_a_time(database: Database) -> None:
    assert await take_lease(database, "job", "replica-a", 30)
    assert not await take_lease(database, "job", "replica-b", 30)
    assert await take_lease(database, "job", "replica-a", 30)  # renewal
    await release_lease(database, "job", "replica-a")
    assert await take_lease(database, "job", "replica-b", 0.2)  # released: b takes over
    await asyncio.sleep(0.3)
    assert await take_lease(database, "job", "replica-a", 30)  # b's lapsed: a takes over


class TokenStandIn:
    """A token endpoint that answers what the test queued, one answer per request."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str], dict[str, object]]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        await reader.readexactly(length)
        status, headers, body = self.answers.pop(0)
        data = json.dumps(body).encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: "
            f"{len(data)}\r\n{extra}connection: close\r\n\r\n".encode()
            + data
        )
        await writer.drain()
        writer.close()


async def test_retry_after_and_repeated_invalid_grant(gateway: AppHarness) -> None:
    stand_in = TokenStandIn()
    base = await stand_in.start()
    r = await gateway.client.post(
        "/api/v1/servers",
        json={
            "name": "stubbed",
            "type": "remote",
            "config": {
                "url": "http://127.0.0.1:9/mcp",
                "credentials": {
                    "kind": "oauth",
                    "client_id": "gw",
                    "authorization_endpoint": f"{base}/auth",
                    "token_endpoint": f"{base}/token",
                },
            },
        },
        headers=gateway.auth(),
    )
    assert r.status_code == 201, r.text
    user_id, key = await user_key(gateway, "alice@corp.example")
    state = gateway.app.state.gw  # type: ignore[attr-defined]
    service = state.connections
    async with state.db.session() as session:
        server = (await session.scalars(select(McpServer).where(McpServer.name == "stubbed"))).one()
    saved = await service.save(
        server, user_id, "oauth", tokens=Tokens("at-1", "rt-1", utcnow() + timedelta(minutes=5))
    )

    async def row() -> Connection:
        async with state.db.session() as session:
            found = await session.get(Connection, saved.id)
            assert found is not None
            return found

    # 503 with Retry-After: nothing counted, the next try moves to then.
    stand_in.answers.append((503, {"Retry-After": "42"}, {}))
    await refresh_one(service, saved.id)
    busy = await row()
    assert (busy.failures, busy.status) == (0, "active")
    assert busy.next_refresh_at is not None
    wait = (busy.next_refresh_at - utcnow()).total_seconds()
    assert 38 < wait <= 42, wait
    assert "retry in 42s" in (busy.last_error or "")
    # invalid_grant once: counted, shown as expiring; twice: broken, audited.
    for _ in range(2):
        stand_in.answers.append((400, {}, {"error": "invalid_grant", "error_description": "gone"}))
        await refresh_one(service, saved.id)
        listed = await gateway.client.get(
            "/api/v1/connections", headers={"Authorization": f"Bearer {key}"}
        )
        status = listed.json()[0]["status"]
        assert status == ("expiring" if (await row()).failures == 1 else "broken")
    assert (await row()).status == "broken"
    assert service.vault.get("stubbed", user_id).status == "broken"
    found = await execute(gateway, key, "stubbed__anything")
    assert "broken" in found["content"][0]["text"]  # type: ignore[index]
    await state.audit.flush()
    async with state.db.session() as session:
        actions = set((await session.scalars(select(AuditEvent.action))).all())
    assert "connection.broken" in actions
    assert stand_in.server is not None
    stand_in.server.close()
