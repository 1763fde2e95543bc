"""MCP authorization end to end: a real MCP client, given nothing but the gateway's URL,
discovers the gateway's OAuth authorization server, registers itself, has the user sign
in and consent, and uses the token it gets.

Real: the gateway (an ``mcpgw serve`` process on loopback), the MCP SDK's client
(``mcp.client.auth.OAuthClientProvider`` under ``mcp.Client``, over Streamable HTTP and
the legacy SSE transport) and ``fastmcp.Client`` with ``fastmcp.client.auth.OAuth``
(and its own local callback server). Scripted: the user's browser, played by a plain
``httpx`` client with a cookie jar that follows the authorization URL by hand
(authorize → consent → sign-in page → API key → consent page → allow) and stops at the
client's redirect URI; for fastmcp it stands in for ``webbrowser.open`` and then opens
that redirect URI on fastmcp's callback server, as a browser would.

The same flow step by step, in process, and its attacks: test_oauth_server.py.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
import webbrowser
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from pydantic import AnyUrl

from tests.support import BOOT, Server

# Where the SDK client says the browser comes back to. Nothing listens there: the
# scripted browser stops at this redirect and hands its query to the client.
REDIRECT = "http://127.0.0.1:9/callback"
TOOL = "essentials__calculator_evaluate"
FLOW_TIMEOUT = 60  # seconds for any one sign-in and connection
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def gateway(module_server_factory: Callable[..., Server]) -> Server:
    """One gateway for the module: each test registers clients (and users) of its own."""
    server = module_server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT)
    server.wait_ready()
    return server


# --- the client's side ----------------------------------------------------------------


class MemoryStorage:
    """The SDK's ``TokenStorage``, in memory: what the client registered and holds."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info

    @property
    def access_token(self) -> str:
        assert self.tokens is not None
        return self.tokens.access_token

    @property
    def client_id(self) -> str:
        assert self.client_info is not None and self.client_info.client_id
        return self.client_info.client_id


# --- the user's side: a scripted browser ------------------------------------------------


async def sign_in_and_approve(
    gateway: str, authorization_url: str, api_key: str, decision: str = "allow"
) -> str:
    """Be the user's browser from the authorization URL to the client's redirect URI
    (which it does not open): the location the consent page sent it to."""
    origin = {"Origin": gateway}  # what a browser sends with a form post
    async with httpx.AsyncClient(base_url=gateway, follow_redirects=False, timeout=30) as web:
        r = await web.get(authorization_url)
        assert r.status_code == 302, r.text
        consent = r.headers["location"]
        assert consent.startswith(f"{gateway}/oauth/consent?request="), consent
        r = await web.get(consent)
        assert r.status_code == 303, r.text  # nobody is signed in in this browser yet
        sign_in = r.headers["location"]
        assert sign_in.startswith("/auth/signin?next="), sign_in
        page = await web.get(sign_in)
        assert page.status_code == 200 and 'name="api_key"' in page.text, page.text
        next_path = parse_qs(urlsplit(sign_in).query)["next"][0]
        r = await web.post(
            "/auth/signin", data={"api_key": api_key, "next": next_path}, headers=origin
        )
        assert r.status_code == 303, r.text
        assert r.headers["location"] == next_path
        page = await web.get(next_path)
        assert page.status_code == 200, page.text
        form = dict(re.findall(r'name="(request|csrf_token)" value="([^"]+)"', page.text))
        assert set(form) == {"request", "csrf_token"}, page.text
        r = await web.post("/oauth/consent", data={**form, "decision": decision}, headers=origin)
        assert r.status_code == 303, r.text
        return str(r.headers["location"])


class Browser:
    """The SDK's ``redirect_handler`` and ``callback_handler``: the first signs in and
    approves (scripted), the second hands the client what came back to its redirect URI."""

    def __init__(self, gateway: str, api_key: str = BOOT) -> None:
        self.gateway = gateway
        self.api_key = api_key
        self.opened: list[str] = []  # authorization URLs, one per sign-in
        self._returned: str | None = None

    async def open(self, authorization_url: str) -> None:
        self.opened.append(authorization_url)
        self._returned = await sign_in_and_approve(self.gateway, authorization_url, self.api_key)

    async def callback(self) -> AuthorizationCodeResult:
        assert self._returned is not None and self._returned.startswith(REDIRECT + "?")
        query = parse_qs(urlsplit(self._returned).query)
        self._returned = None
        return AuthorizationCodeResult(
            code=query["code"][0], state=query["state"][0], iss=query.get("iss", [None])[0]
        )

    def asked(self, param: str) -> str:
        """A parameter of the last authorization request."""
        return parse_qs(urlsplit(self.opened[-1]).query)[param][0]


class NoBrowser(Browser):
    """For a client that must not need the user again."""

    async def open(self, authorization_url: str) -> None:
        raise AssertionError(f"the client asked the user to sign in again: {authorization_url}")


def provider_for(url: str, storage: MemoryStorage, browser: Browser) -> OAuthClientProvider:
    return OAuthClientProvider(
        url,
        client_metadata=OAuthClientMetadata(
            client_name="Scripted Agent",
            redirect_uris=[AnyUrl(REDIRECT)],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.open,
        callback_handler=browser.callback,
    )


@asynccontextmanager
async def oauth_connect(
    url: str, storage: MemoryStorage, browser: Browser, mode: str = "auto"
) -> AsyncIterator[tuple[Client, OAuthClientProvider]]:
    """An MCP SDK client on ``url`` that authorizes itself (no key given)."""
    provider = provider_for(url, storage, browser)
    http = httpx2.AsyncClient(auth=provider, timeout=httpx2.Timeout(30))
    async with (
        asyncio.timeout(FLOW_TIMEOUT),
        http,
        Client(streamable_http_client(url, http_client=http), cache=None, mode=mode) as client,
    ):
        yield client, provider


async def evaluate(client: Client, expression: str, tool: str = TOOL) -> str:
    result = await client.call_tool(tool, {"expression": expression})
    assert result.is_error is False, result
    return str(result.content[0].text)  # type: ignore[union-attr]


async def raw_mcp(url: str, token: str) -> httpx.Response:
    """One MCP request (initialize) with ``token``, outside any client."""
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            url, json=INIT, headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"}
        )


def new_user_key(gateway: Server, role: str) -> str:
    """An API key of a new user with ``role`` (what that user signs in with)."""
    admin = {"Authorization": f"Bearer {BOOT}"}
    user = httpx.post(
        f"{gateway.url}/api/v1/users",
        json={"email": f"{role}-{uuid.uuid4().hex[:8]}@example.com", "role": role},
        headers=admin,
        timeout=30,
    )
    assert user.status_code == 201, user.text
    key = httpx.post(
        f"{gateway.url}/api/v1/keys",
        json={"name": "sign-in", "user_id": user.json()["id"]},
        headers=admin,
        timeout=30,
    )
    assert key.status_code == 201, key.text
    return str(key.json()["key"])


def assert_refused(r: httpx.Response, code: str) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["code"] == code, r.text
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


# --- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # 2026-07-28, and 2025-11-25 sessions
async def test_the_sdk_client_signs_in_with_only_the_url(gateway: Server, mode: str) -> None:
    r = httpx.post(f"{gateway.url}/mcp", json=INIT, headers=MCP_HEADERS, timeout=30)
    assert r.status_code == 401
    metadata = f"{gateway.url}/.well-known/oauth-protected-resource/mcp"
    assert f'resource_metadata="{metadata}"' in r.headers["www-authenticate"]

    storage, browser = MemoryStorage(), Browser(gateway.url)
    async with oauth_connect(f"{gateway.url}/mcp", storage, browser, mode) as (client, _):
        assert client.protocol_version == {"auto": "2026-07-28", "legacy": "2025-11-25"}[mode]
        names = [t.name for t in (await client.list_tools()).tools]
        assert TOOL in names
        assert await evaluate(client, "6*7") == "42"
    # Registered itself (RFC 7591) as a public client, then one sign-in.
    assert storage.client_info is not None
    assert storage.client_info.token_endpoint_auth_method == "none"
    assert storage.client_info.client_secret is None
    assert len(browser.opened) == 1
    assert browser.opened[0].startswith(f"{gateway.url}/oauth/authorize?")
    assert browser.asked("client_id") == storage.client_id
    assert browser.asked("resource") == f"{gateway.url}/mcp"  # RFC 8707
    assert browser.asked("code_challenge_method") == "S256"
    assert storage.tokens is not None
    assert storage.access_token.startswith("mgw_at_")
    assert (storage.tokens.refresh_token or "").startswith("mgw_rt_")

    # The token is for /mcp and nothing else.
    token = storage.access_token
    assert (await raw_mcp(f"{gateway.url}/mcp", token)).status_code == 200
    assert_refused(
        await raw_mcp(f"{gateway.url}/mcp/servers/essentials", token), "invalid_audience"
    )
    me = httpx.get(
        f"{gateway.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert_refused(me, "invalid_audience")
    assert token not in me.text

    # Connecting again, the client uses what it holds: the user is not asked again.
    async with oauth_connect(f"{gateway.url}/mcp", storage, NoBrowser(gateway.url)) as (c, _):
        assert await evaluate(c, "1+2") == "3"


async def test_a_single_server_endpoint_gets_a_token_of_its_own(gateway: Server) -> None:
    url = f"{gateway.url}/mcp/servers/essentials"
    metadata = f"{gateway.url}/.well-known/oauth-protected-resource/mcp/servers/essentials"
    r = httpx.post(url, json=INIT, headers=MCP_HEADERS, timeout=30)
    assert r.status_code == 401
    assert f'resource_metadata="{metadata}"' in r.headers["www-authenticate"]
    assert httpx.get(metadata, timeout=30).json()["resource"] == url

    storage, browser = MemoryStorage(), Browser(gateway.url)
    async with oauth_connect(url, storage, browser) as (client, _):
        names = {t.name for t in (await client.list_tools()).tools}
        assert "calculator_evaluate" in names
        assert await evaluate(client, "2**10", tool="calculator_evaluate") == "1024"
    assert browser.asked("resource") == url
    token = storage.access_token
    assert token.startswith("mgw_at_")
    assert (await raw_mcp(url, token)).status_code == 200
    assert_refused(await raw_mcp(f"{gateway.url}/mcp", token), "invalid_audience")


async def test_refresh(gateway: Server) -> None:
    url = f"{gateway.url}/mcp"
    storage, browser = MemoryStorage(), Browser(gateway.url)
    async with oauth_connect(url, storage, browser) as (client, provider):
        assert await evaluate(client, "1") == "1"
        first = storage.tokens
        assert first is not None and first.refresh_token
        # The SDK's own refresh, once it believes the access token has expired: at the
        # token endpoint it discovered, rotating both tokens, without the user.
        provider.context.token_expiry_time = time.time() - 1
        assert await evaluate(client, "3+4") == "7"
    second = storage.tokens
    assert second is not None and second is not first and second.refresh_token
    assert second.access_token.startswith("mgw_at_")
    assert second.access_token != first.access_token
    assert second.refresh_token != first.refresh_token
    assert len(browser.opened) == 1

    # The token endpoint called directly, as the SDK calls it to refresh.
    r = httpx.post(
        f"{gateway.url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": second.refresh_token,
            "client_id": storage.client_id,
            "resource": url,
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    storage.tokens = OAuthToken.model_validate(r.json())
    assert storage.access_token.startswith("mgw_at_")
    assert storage.access_token not in (first.access_token, second.access_token)
    assert storage.tokens.refresh_token not in (None, second.refresh_token)
    # A client started afresh carries on with the new access token, without the user.
    # (Such a client cannot refresh by itself yet: the SDK does not keep the metadata it
    # discovered, and refreshes at `{origin}/token` — modelcontextprotocol/python-sdk
    # #3240 — hence the SDK's own refresh above, in the process that discovered.)
    async with oauth_connect(url, storage, NoBrowser(gateway.url)) as (client, _):
        assert await evaluate(client, "2+3") == "5"
    assert (await raw_mcp(url, storage.access_token)).status_code == 200


async def test_revocation_ends_access_at_once(gateway: Server) -> None:
    url = f"{gateway.url}/mcp"
    storage, browser = MemoryStorage(), Browser(gateway.url)
    async with oauth_connect(url, storage, browser) as (client, _):
        assert await evaluate(client, "1") == "1"
        token = storage.access_token
        assert (await raw_mcp(url, token)).status_code == 200  # known to the auth cache now
        r = httpx.post(
            f"{gateway.url}/oauth/revoke",
            data={"token": token, "client_id": storage.client_id},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        # This process drops the token from its cache at once (other replicas within
        # MCPGW_AUTH_CACHE_TTL_SECONDS).
        assert_refused(await raw_mcp(url, token), "invalid_token")
        # The connected client meets the 401, and has the user sign in again.
        assert await evaluate(client, "2") == "2"
    assert len(browser.opened) == 2
    assert storage.access_token != token


async def test_a_viewer_who_approves_lists_but_cannot_call(gateway: Server) -> None:
    storage = MemoryStorage()
    browser = Browser(gateway.url, api_key=new_user_key(gateway, "viewer"))
    async with oauth_connect(f"{gateway.url}/mcp", storage, browser) as (client, _):
        assert TOOL in {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool(TOOL, {"expression": "1"})
        assert result.is_error is True
        assert "tools:execute" in result.content[0].text  # type: ignore[union-attr]
    assert storage.access_token.startswith("mgw_at_")


async def test_fastmcp_client(gateway: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """fastmcp's ``OAuth`` opens the system browser (``webbrowser.open``) and waits on a
    local callback server of its own. The browser is the one thing replaced: a thread
    that signs in, approves and then opens the redirect URI, as a browser would."""
    import fastmcp
    from fastmcp.client.auth import OAuth
    from key_value.aio.stores.memory import MemoryStore

    opened: list[str] = []
    failures: list[BaseException] = []
    threads: list[threading.Thread] = []

    def user(authorization_url: str) -> None:
        try:
            back = asyncio.run(sign_in_and_approve(gateway.url, authorization_url, BOOT))
            # The callback server starts once the browser is open; a browser's user is slower.
            deadline = time.monotonic() + 30
            while True:
                try:
                    r = httpx.get(back, timeout=10)
                    assert r.status_code == 200, r.text
                    return
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        except BaseException as exc:
            failures.append(exc)

    def open_browser(url: str, *_: Any, **__: Any) -> bool:
        opened.append(url)
        thread = threading.Thread(target=user, args=(url,), daemon=True)
        threads.append(thread)
        thread.start()
        return True

    monkeypatch.setattr(webbrowser, "open", open_browser)
    with pytest.warns(UserWarning, match="in-memory token storage"):
        auth = OAuth(
            f"{gateway.url}/mcp",
            client_name="fastmcp agent",
            token_storage=MemoryStore(),
            callback_host="127.0.0.1",
            callback_timeout=FLOW_TIMEOUT,
        )
    try:
        async with (
            asyncio.timeout(FLOW_TIMEOUT),
            fastmcp.Client(f"{gateway.url}/mcp", auth=auth) as client,
        ):
            assert TOOL in {t.name for t in await client.list_tools()}
            result = await client.call_tool(TOOL, {"expression": "7*6"})
            assert result.content[0].text == "42"
    finally:
        for thread in threads:
            thread.join(timeout=30)
    assert not failures, failures
    assert len(opened) == 1
    assert parse_qs(urlsplit(opened[0]).query)["resource"] == [f"{gateway.url}/mcp"]
    tokens = auth.context.current_tokens
    assert tokens is not None and tokens.access_token.startswith("mgw_at_")


async def test_the_legacy_sse_transport(gateway: Server) -> None:
    """Clients from before Streamable HTTP connect to /sse: their 401 must lead to
    metadata naming /sse (the SDK refuses any other resource), and the token they get
    opens the same endpoint as /mcp's."""
    from mcp.client.sse import sse_client

    url = f"{gateway.url}/sse"
    r = httpx.get(url, timeout=30)
    assert r.status_code == 401
    metadata = f"{gateway.url}/.well-known/oauth-protected-resource/sse"
    assert f'resource_metadata="{metadata}"' in r.headers["www-authenticate"]

    storage, browser = MemoryStorage(), Browser(gateway.url)
    provider = provider_for(url, storage, browser)
    async with (
        asyncio.timeout(FLOW_TIMEOUT),
        Client(sse_client(url, auth=provider), cache=None, mode="legacy") as client,
    ):
        assert await evaluate(client, "3*3") == "9"
    assert browser.asked("resource") == url
    token = storage.access_token
    assert token.startswith("mgw_at_")
    assert (await raw_mcp(f"{gateway.url}/mcp", token)).status_code == 200
    assert_refused(
        await raw_mcp(f"{gateway.url}/mcp/servers/essentials", token), "invalid_audience"
    )
