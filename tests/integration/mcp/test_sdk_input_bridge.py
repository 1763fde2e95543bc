"""A 2025-11-25 backend on the SDK path asks a 2026-07-28 agent through `input_required`.

The backend is the real `@modelcontextprotocol/server-everything` over stdio (npx), which
the fast path never serves: it samples and elicits mid-call on its shared session. A
2026 agent has no session to be asked on; the gateway answers it `input_required` (the
question and a `requestState`), keeps the backend's call open, and the agent's retry
answers the question and follows the same call, as on the fast path
(tests/integration/mcp/test_fastpath.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.integration.mcp.test_endpoint import _new_key
from tests.integration.servers.conftest import EVERYTHING
from tests.support import BOOT, Server
from tests.support_mcp import last_message, modern_call

AUTH = {"Authorization": f"Bearer {BOOT}"}
TIMEOUT = 4.0  # the gateway's call timeout: also how long a question waits for its answer
SAMPLE = "ev__trigger-sampling-request"
ELICIT = "ev__trigger-elicitation-request"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = Server(
        tmp_path_factory.mktemp("sdk-input"),
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_SERVER_CALL_TIMEOUT_SECONDS=str(TIMEOUT),
    )
    try:
        server.wait_ready()
        r = httpx.post(
            f"{server.url}/api/v1/servers",
            params={"wait": True},
            json={
                "name": "ev",
                "type": "npx",
                "config": {"package": EVERYTHING, "args": ["stdio"]},
            },
            headers=AUTH,
            timeout=300,
        )
        assert r.status_code == 201, r.text
        yield server
    finally:
        server.stop()


def _text(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def _agent(gateway: Server, mode: str = "auto", **callbacks: Any) -> tuple[Any, Client]:
    http = create_mcp_http_client(headers=AUTH)
    transport = streamable_http_client(f"{gateway.url}/mcp", http_client=http)
    return http, Client(transport, cache=None, mode=mode, **callbacks)


def _call(gateway: Server, name: str, key: str = BOOT, **params: Any) -> tuple[int, dict[str, Any]]:
    """One raw 2026-07-28 `tools/call`: its HTTP status and JSON-RPC message."""
    body, headers = modern_call(
        name,
        {},
        key=key,
        request_id=7,
        capabilities={"elicitation": {"form": {}}},
        params=params,
    )
    r = httpx.post(f"{gateway.url}/mcp", json=body, headers=headers, timeout=30)
    return r.status_code, last_message(r)


def _asked(gateway: Server) -> tuple[str, dict[str, Any]]:
    """Start an elicitation call: its `requestState` and the question asked."""
    status, message = _call(gateway, ELICIT)
    assert status == 200, message
    result = message["result"]
    assert result["resultType"] == "input_required", result
    assert list(result["inputRequests"]) == ["input-1"]
    return result["requestState"], result["inputRequests"]["input-1"]


def _answers(requests: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
    """The agent's answers: ``content`` to the form; no roots (server-everything syncs
    roots whenever it likes, and a call in flight is who it asks)."""
    return {
        key: {"action": "accept", "content": content}
        if request["method"] == "elicitation/create"
        else {"roots": []}
        for key, request in requests.items()
    }


async def test_a_2026_agent_answers_sampling_and_elicitation_through_input_required(
    gateway: Server,
) -> None:
    asked: list[str] = []

    async def sampling(
        context: Any, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        asked.append(params.messages[0].content.text)  # type: ignore[union-attr]
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="forty-two, from the agent"),
            model="agent-llm",
        )

    async def elicitation(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Ada", "check": True})

    http, client = _agent(gateway, sampling_callback=sampling, elicitation_callback=elicitation)
    async with http, client:
        assert client.protocol_version == "2026-07-28"
        sampled = await client.call_tool(SAMPLE, {"prompt": "6 x 7?"})
        elicited = await client.call_tool(ELICIT, {})
    assert sampled.is_error is False, _text(sampled)
    assert "forty-two, from the agent" in _text(sampled)
    assert elicited.is_error is False, _text(elicited)
    assert "Ada" in _text(elicited)
    assert "6 x 7?" in asked[0] and asked[1].startswith("Please provide inputs")
    assert '"route": "direct"' not in gateway.output()  # the SDK path served it all


def test_the_retry_answers_the_same_call_and_only_its_owner_may_make_it(
    gateway: Server,
) -> None:
    state, question = _asked(gateway)
    assert state.startswith("mcpgw-input-") and question["method"] == "elicitation/create"
    answers = _answers({"input-1": question}, {"name": "Grace", "check": True})
    other = _new_key(gateway, "developer")
    status, message = _call(gateway, ELICIT, other, inputResponses=answers, requestState=state)
    assert status == 400 and message["error"]["code"] == -32602, message
    first, rounds = state, 0
    while True:
        status, message = _call(gateway, ELICIT, inputResponses=answers, requestState=state)
        assert status == 200, message
        result = message["result"]
        if result["resultType"] != "input_required":
            break
        assert (rounds := rounds + 1) < 5, result
        answers, state = _answers(result["inputRequests"], {}), result["requestState"]
    assert result["resultType"] == "complete" and not result.get("isError"), result
    assert "Grace" in str(result["content"])
    # One retry per requestState: the call it named has moved on.
    status, message = _call(gateway, ELICIT, inputResponses=answers, requestState=first)
    assert status == 400 and "call the tool again" in message["error"]["message"], message


async def test_a_question_nobody_answers_expires_and_its_call_ends(gateway: Server) -> None:
    state, _ = _asked(gateway)
    await asyncio.sleep(TIMEOUT + 1)
    status, message = _call(gateway, ELICIT, inputResponses={}, requestState=state)
    assert status == 400 and "expired" in message["error"]["message"], message
    # The backend's call was cancelled: the stdio session has no request in flight, so
    # a 2025-11-25 agent's sampling call is relayed to it (not refused as ambiguous).
    answered: list[str] = []

    async def sampling(context: Any, params: Any) -> types.CreateMessageResult:
        answered.append("yes")
        reply = types.TextContent(type="text", text="still here")
        return types.CreateMessageResult(role="assistant", content=reply, model="m")

    http, client = _agent(gateway, mode="legacy", sampling_callback=sampling)
    async with http, client:
        result = await asyncio.wait_for(client.call_tool(SAMPLE, {"prompt": "hi"}), 30)
    assert answered == ["yes"] and "still here" in _text(result), _text(result)
