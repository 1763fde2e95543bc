"""The server generator in production mode: PostgreSQL, Redis as Celery's broker and
the event bus, a `mcpgw worker` process of its own (the gateway runs none), the real
Petstore 3 document on loopback; the generated server answers an agent's call."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.fixtures.petstore_api import PetstoreApi
from tests.integration.generate.support import draft_of, generate, mcp_client
from tests.integration.jobs.test_redis import Workers, production  # noqa: F401  (fixture)
from tests.support import BOOT, Server


async def test_generation_on_redis_with_a_worker_of_its_own(
    server_factory: type[Server],
    production: dict[str, str],  # noqa: F811
    petstore: PetstoreApi,
    tmp_path: Path,
) -> None:
    env = {**production, "MCPGW_ALLOW_PRIVATE_URLS": "true"}
    gateway = server_factory(**env)
    gateway.wait_ready(timeout=60)
    workers = Workers(tmp_path, env)
    workers.start()
    try:
        auth = {"Authorization": f"Bearer {BOOT}"}
        async with httpx.AsyncClient(base_url=gateway.url, headers=auth, timeout=60) as client:
            job_id = await generate(
                client, url=f"{petstore.url}/specs/petstore3.yaml", base_url=petstore.base_url,
                name="petstore-redis", secret_headers={"api_key": "k-1"},
            )  # fmt: skip
            draft = await draft_of(client, job_id)
            assert len(draft["tools"]) == 19
            r = await client.get(f"/api/v1/jobs/{job_id}")
            assert r.json()["worker"]  # run by the `mcpgw worker` process
            r = await client.post(
                f"/api/v1/jobs/{job_id}/approve", json={"tools": ["getPetById", "getInventory"]}
            )
            assert r.status_code == 200, r.text
        async with mcp_client(gateway.url, BOOT) as mcp:
            names = {t.name for t in await mcp.list_tools()}
            assert {"petstore-redis__getPetById", "petstore-redis__getInventory"} <= names
            assert "petstore-redis__addPet" not in names
            result = await mcp.call_tool("petstore-redis__getInventory", {})
            assert result.structured_content == {"available": 1, "sold": 1}
    finally:
        workers.stop()
