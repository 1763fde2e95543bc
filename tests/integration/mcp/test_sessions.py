"""Agent sessions on a real gateway: who may use one, how many a key holds, request ids.

Raw HTTP against a real gateway process (so each test sees exactly what a client
sends and gets), with the real backend of tests/fixtures/http_backend.py behind it
for calls that take the fast path. Covers both transports that have sessions:
Streamable HTTP 2025-11-25 (`Mcp-Session-Id`) and legacy HTTP+SSE (`/sse` +
`/messages/?session_id=`).
"""

# ruff: noqa: F811 (the `gateway` and `backend` fixtures come from test_fastpath)
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.integration.mcp.test_endpoint import _new_key
from tests.integration.mcp.test_fastpath import backend, gateway  # noqa: F401 (fixtures)
from tests.support import BOOT, Server
from tests.support_mcp import LEGACY_INIT

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INIT = LEGACY_INIT
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


def _headers(key: str, session: str | None = None) -> dict[str, str]:
    headers = {**HEADERS, "Authorization": f"Bearer {key}"}
    if session is not None:
        headers.update({"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"})
    return headers


def _open(server: Server, key: str = BOOT) -> str:
    """A 2025-11-25 session on /mcp, initialized; returns its id."""
    r = httpx.post(f"{server.url}/mcp", json=INIT, headers=_headers(key), timeout=10)
    assert r.status_code == 200, r.text
    session = r.headers["mcp-session-id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    done = httpx.post(f"{server.url}/mcp", json=note, headers=_headers(key, session))
    assert done.status_code == 202, done.text
    return session


def _refused_as(r: httpx.Response, status: int, reason: str) -> None:
    """A `/mcp` refusal: a JSON-RPC error whose data names the gateway's code."""
    assert r.status_code == status, r.text
    body = r.json()
    assert body["jsonrpc"] == "2.0" and body["id"] is None, body
    assert body["error"]["data"]["code"] == reason, body


def _second_key_of_the_admin(server: Server) -> str:
    """Another key of the same user as BOOT (same user, same scopes, another key)."""
    r = httpx.post(
        f"{server.url}/api/v1/keys",
        json={"name": "second"},
        headers={"Authorization": f"Bearer {BOOT}"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def _call(name: str, arguments: dict[str, Any], request_id: Any = 1) -> dict[str, Any]:
    params = {"name": name, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


class SseSession:
    """A legacy `/sse` stream read in the background."""

    def __init__(self, session_id: str, events: list[str]) -> None:
        self.session_id = session_id
        self.events = events

    def messages(self) -> list[str]:
        return [line for line in self.events if line.startswith("data: {")]


@asynccontextmanager
async def sse(server: Server, key: str = BOOT) -> AsyncIterator[SseSession]:
    events: list[str] = []
    ready = asyncio.Event()

    async def read(client: httpx.AsyncClient) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        async with client.stream("GET", f"{server.url}/sse", headers=headers) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                events.append(line)
                ready.set()

    async with httpx.AsyncClient(timeout=30) as client:
        reader = asyncio.create_task(read(client))
        await asyncio.wait_for(ready.wait(), 10)
        endpoint = next(e for e in events if e.startswith("data: "))
        session = SseSession(endpoint.split("session_id=")[1].strip(), events)
        try:
            yield session
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def _post_message(
    server: Server, query: str, message: dict[str, Any], key: str
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(
            f"{server.url}/messages/?{query}",
            json=message,
            headers={"Authorization": f"Bearer {key}"},
        )


# --- finding 4: legacy SSE session ids -------------------------------------------------


async def test_legacy_session_ids_are_taken_only_as_the_endpoint_event_wrote_them(
    gateway: Server,
) -> None:
    intruder = _new_key(gateway, "developer")
    async with sse(gateway) as victim, sse(gateway, intruder) as mine:
        sid = victim.session_id
        dashed = str(uuid.UUID(sid))
        # Spellings the SDK would parse to the victim's session (it takes any UUID form).
        for spelling in (sid.upper(), "{" + sid + "}", "urn:uuid:" + dashed, dashed):
            r = await _post_message(gateway, f"session_id={spelling}", PING, intruder)
            assert r.status_code == 400, (spelling, r.status_code, r.text)
            assert r.json()["code"] == "invalid_session_id"
        # Two ids: the gateway must not check one while the SDK uses the other.
        query = f"session_id={mine.session_id}&session_id={sid}"
        r = await _post_message(gateway, query, PING, intruder)
        assert r.status_code == 400 and r.json()["code"] == "invalid_session_id"
        r = await _post_message(gateway, f"session_id={sid}", PING, intruder)
        assert r.status_code == 404 and r.json()["code"] == "session_not_found"
        await asyncio.sleep(0.3)
        assert victim.messages() == []  # nothing landed in the victim's session
        # Its owner still uses it.
        r = await _post_message(gateway, f"session_id={sid}", {**PING, "id": 42}, BOOT)
        assert r.status_code == 202
        for _ in range(50):
            if victim.messages():
                break
            await asyncio.sleep(0.05)
        assert '"id":42' in victim.messages()[0]


async def test_a_tool_result_naming_a_session_does_not_make_it_yours(gateway: Server) -> None:
    intruder = _new_key(gateway, "developer")
    async with sse(gateway) as victim, sse(gateway, intruder) as mine:
        query = f"session_id={mine.session_id}"
        init = {**INIT, "params": {**INIT["params"], "protocolVersion": "2024-11-05"}}  # type: ignore[dict-item]
        assert (await _post_message(gateway, query, init, intruder)).status_code == 202
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await _post_message(gateway, query, note, intruder)).status_code == 202
        # The echo comes back on the intruder's own stream as "session_id=<victim's>".
        echo = _call("fix__echo", {"text": f"session_id={victim.session_id}"}, 2)
        assert (await _post_message(gateway, query, echo, intruder)).status_code == 202
        for _ in range(100):
            if any(victim.session_id in m for m in mine.messages()):
                break
            await asyncio.sleep(0.05)
        assert any(victim.session_id in m for m in mine.messages())
        r = await _post_message(gateway, f"session_id={victim.session_id}", PING, intruder)
        assert r.status_code == 404, r.text
        assert victim.messages() == []


# --- finding 7a: a session belongs to the key --------------------------------------------


async def test_a_session_belongs_to_the_key_not_just_the_user(gateway: Server) -> None:
    session = _open(gateway)
    other = _second_key_of_the_admin(gateway)
    url = f"{gateway.url}/mcp"
    # SDK path (ping), fast path (a remote tool), the GET stream and DELETE: all 404.
    for message in (PING, _call("fix__echo", {"text": "x"})):
        r = httpx.post(url, json=message, headers=_headers(other, session))
        _refused_as(r, 404, "session_not_found")
        assert "mcpgw-route" not in r.headers
    _refused_as(httpx.get(url, headers=_headers(other, session)), 404, "session_not_found")
    _refused_as(httpx.delete(url, headers=_headers(other, session)), 404, "session_not_found")
    # The owner's key still has it, on both paths.
    assert httpx.post(url, json=PING, headers=_headers(BOOT, session)).status_code == 200
    r = httpx.post(url, json=_call("fix__echo", {"text": "x"}), headers=_headers(BOOT, session))
    assert r.status_code == 200 and r.headers["mcpgw-route"] == "direct"
    # Legacy SSE: the same rule.
    async with sse(gateway) as stream:
        r = await _post_message(gateway, f"session_id={stream.session_id}", PING, other)
        assert r.status_code == 404 and r.json()["code"] == "session_not_found"


def test_an_unknown_session_is_not_found(gateway: Server) -> None:
    for session in (uuid.uuid4().hex, "not-a-session"):
        r = httpx.post(f"{gateway.url}/mcp", json=PING, headers=_headers(BOOT, session))
        _refused_as(r, 404, "session_not_found")


# --- finding 7c: duplicate request ids ----------------------------------------------------


@pytest.mark.parametrize("route", ["direct", "sdk"])
async def test_a_duplicate_request_id_is_refused_and_the_first_still_answered(
    gateway: Server, route: str
) -> None:
    session = _open(gateway)

    def call(tool: str, arguments: dict[str, Any], request_id: Any) -> dict[str, Any]:
        if route == "direct":
            return _call(tool, arguments, request_id)
        # EXECUTE_TOOL is served by the SDK path (the SDK would hand the first
        # request's response stream to the second: the first never answered).
        return _call("EXECUTE_TOOL", {"tool": tool, "arguments": arguments}, request_id)

    first = call("fix__sleep", {"seconds": 1}, 7)
    async with httpx.AsyncClient(timeout=10, headers=_headers(BOOT, session)) as client:
        url = f"{gateway.url}/mcp"
        running = asyncio.create_task(client.post(url, json=first))
        await asyncio.sleep(0.3)
        for dup_id in (7, "7"):  # the SDK keys requests by str(id): one id
            dup = await client.post(url, json=call("fix__echo", {"text": "dup"}, dup_id))
            assert dup.status_code == 400, dup.text
            error = dup.json()["error"]
            assert error["code"] == -32600
            assert "request id" in error["message"] and "already in use" in error["message"]
            assert dup.json()["id"] is None  # never mistaken for the first one's answer
        started = time.monotonic()
        answered = await asyncio.wait_for(running, 5)
        assert time.monotonic() - started < 3
        assert answered.status_code == 200
        assert '"id":7' in answered.text and "slept" in answered.text
        assert (answered.headers.get("mcpgw-route") == "direct") is (route == "direct")
        # Answered: the id is free again.
        again = await client.post(url, json=call("fix__echo", {"text": "again"}, 7))
        assert again.status_code == 200 and "again" in again.text


# --- finding 7b: sessions per key are capped; ended ones free their slot -----------------


@pytest.fixture
def capped(server_factory: type[Server]) -> Server:
    server = server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_MCP_MAX_SESSIONS_PER_KEY="2",
        MCPGW_MCP_SESSION_IDLE_SECONDS="3",
    )
    server.wait_ready()
    return server


def _refused(server: Server, key: str = BOOT) -> dict[str, Any]:
    r = httpx.post(f"{server.url}/mcp", json={**INIT, "id": 9}, headers=_headers(key))
    assert r.status_code == 429, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_sessions_per_key_are_capped_and_freed_as_they_end(capped: Server) -> None:
    first, _second = _open(capped), _open(capped)
    body = _refused(capped)
    assert body["id"] == 9 and body["jsonrpc"] == "2.0"
    message = body["error"]["message"]
    assert "holds 2 open MCP sessions" in message and "DELETE" in message, message
    # Legacy SSE sessions count too.
    r = httpx.get(f"{capped.url}/sse", headers={"Authorization": f"Bearer {BOOT}"})
    assert r.status_code == 429 and "holds 2" in r.json()["error"]["message"]
    # The cap is per key: another key opens sessions.
    other = _new_key(capped, "developer")
    assert _open(capped, other)
    # DELETE frees a slot at once.
    assert httpx.delete(f"{capped.url}/mcp", headers=_headers(BOOT, first)).status_code == 200
    _open(capped)
    _refused(capped)
    # An SSE stream that disconnects frees its slot.
    async with sse(capped, other):
        _refused(capped, other)
    for _ in range(60):
        r = httpx.post(f"{capped.url}/mcp", json=INIT, headers=_headers(other))
        if r.status_code == 200:
            break
        await asyncio.sleep(0.05)
    assert r.status_code == 200, r.text
    # Idle sessions expire (MCPGW_MCP_SESSION_IDLE_SECONDS=3) and free their slots.
    await asyncio.sleep(3.5)
    _open(capped), _open(capped)
    _refused(capped)


# --- one Mcp-Session-Id: the id checked is the id used ------------------------------------


async def test_an_answer_to_someone_elses_relayed_question_is_refused(gateway: Server) -> None:
    """The backend asks the victim's agent a question mid-call (`fix__ask`); an intruder
    who names its own session *and* the victim's (two headers) must not answer it."""
    victim = _open(gateway)
    intruder = _new_key(gateway, "developer")
    mine = _open(gateway, intruder)
    url = f"{gateway.url}/mcp"
    async with (
        httpx.AsyncClient(timeout=15) as client,
        client.stream(
            "POST", url, json=_call("fix__ask", {}, 3), headers=_headers(BOOT, victim)
        ) as call,
    ):
        assert call.headers["mcpgw-route"] == "direct"
        lines = call.aiter_lines()
        question: dict[str, Any] = {}
        async for line in lines:
            if line.startswith("data: "):
                question = json.loads(line[6:])
                break
        assert question["method"] == "elicitation/create"
        forged = {
            "jsonrpc": "2.0",
            "id": question["id"],
            "result": {"action": "accept", "content": {"name": "mallory"}},
        }
        headers = [
            *_headers(intruder, mine).items(),
            ("Mcp-Session-Id", victim),  # a second header naming the victim's session
        ]
        r = await client.post(url, json=forged, headers=headers)
        _refused_as(r, 400, "invalid_session_id")
        # The victim answers its own question; that answer is the one the backend gets.
        real = {**forged, "result": {"action": "accept", "content": {"name": "alice"}}}
        r = await client.post(url, json=real, headers=_headers(BOOT, victim))
        assert r.status_code == 202, r.text
        async for line in lines:
            if line.startswith("data: ") and '"id":3' in line:
                text = json.loads(line[6:])["result"]["content"][0]["text"]
                assert json.loads(text)["content"] == {"name": "alice"}, text
                break
        else:
            raise AssertionError("the call was never answered")
