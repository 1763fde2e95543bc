"""Helpers of the generator tests: start a generation, follow it to review, approve."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.jobs.sse import Seen, read_events


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The JSON error body, checked: ``status``, ``code`` and a message."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code and isinstance(body["message"], str), body
    return body


async def generate(client: httpx.AsyncClient, **body: Any) -> str:
    """Start a server generation; its job id."""
    r = await client.post("/api/v1/servers/generate", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


async def until_settled(
    client: httpx.AsyncClient, job_id: str, timeout: float = 90
) -> tuple[dict[str, Any], list[Seen]]:
    """Follow the job's events to its end (review, failure…); the job and its events."""
    events = await read_events(client, job_id, {}, timeout=timeout)
    r = await client.get(f"/api/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json(), events


async def draft_of(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """The draft of a generation that must end in review."""
    job, events = await until_settled(client, job_id)
    assert job["status"] == "review", job
    assert events[-1].event == "result" and events[-1].data["status"] == "review"
    return job["result"]  # type: ignore[no-any-return]


def mcp_client(url: str, key: str) -> Any:
    """A real MCP client (FastMCP's) on the gateway's ``/mcp``."""
    from fastmcp import Client
    from fastmcp.client.transports import StreamableHttpTransport

    return Client(StreamableHttpTransport(f"{url}/mcp", auth=key), timeout=30)
