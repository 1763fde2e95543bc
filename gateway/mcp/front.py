"""The MCP protocol front: Streamable HTTP at `/mcp` and `/mcp/servers/{name}`.

Protocol mechanics (both eras: 2025-11-25 sessions with `Mcp-Session-Id`, GET
stream and DELETE; 2026-07-28 stateless requests with `server/discover`) come
from the official SDK's session manager. The gateway adds authentication in
front of it and answers the requests from its own catalog and session pool.
"""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import orjson
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.sse import SseServerTransport
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import ServerCapabilities
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import Message, Receive, Scope, Send

from gateway import __version__
from gateway.asgi_headers import first_header, header_map
from gateway.asgi_replies import send_error
from gateway.auth.authenticator import Authenticator
from gateway.auth.bearer import bearer_token
from gateway.auth.certificates import certificate_email
from gateway.auth.oauth.resources import (
    MCP_SCOPES,
    UNIFIED,
    check_audience,
    metadata_url,
    request_base,
    resource_path,
)
from gateway.auth.principal import Principal
from gateway.config import Settings
from gateway.errors import Unauthenticated
from gateway.mcp import search
from gateway.mcp.fastlist import ToolsListCache
from gateway.mcp.handlers import PRINCIPAL_KEY, TARGET_KEY, GatewayHandlers
from gateway.mcp.legacy import LegacySse
from gateway.mcp.listen import GatewayListen
from gateway.mcp.replies import (
    ambiguous_session,
    duplicate_id,
    json_sdk_errors,
    session_not_found,
    too_large,
    too_many_sessions,
)
from gateway.mcp.sdk_compat import live_server_session
from gateway.mcp.search import tuning as search_tuning
from gateway.mcp.sessions import SessionRegistry, TrackedSessionManager
from gateway.mcp.surface import FastLaneParts, ServersSurface
from gateway.mcp.tasks import serve_tasks, with_handshake_tasks

if TYPE_CHECKING:
    from gateway.mcp.surface import Surface

log = logging.getLogger("gateway.mcp")

SESSION_HEADER = b"mcp-session-id"
_NO_PARAMS: dict[str, str] = {}
CURRENT_CALLER: ContextVar[tuple[Principal, str | None] | None] = ContextVar(
    "mcpgw_caller", default=None
)
SSE_PATH = "/sse"
MESSAGES_PATH = "/messages/"
PROTOCOL_HEADER = b"mcp-protocol-version"
# Seconds after start-up before the search model loads: start-up keeps the CPU.
PRELOAD_DELAY = 1.0
_OWS = b" \t"  # optional whitespace around a header value (RFC 9110 §5.6.3)

INSTRUCTIONS = (
    "MCP Gateway: every tool you may use, from every MCP server registered with the "
    "gateway. Tool names are '<server>__<tool>'."
)


class _GatewayServer(Server[Any]):
    """Announces list changes in the 2025-11-25 handshake (the gateway sends them), and
    tasks: 2025-11-25's `capabilities.tasks`, 2026-07-28's tasks extension."""

    def get_capabilities(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
        *,
        protocol_version: str | None = None,
    ) -> ServerCapabilities:
        found = super().get_capabilities(
            notification_options,
            experimental_capabilities,
            extensions,
            protocol_version=protocol_version,
        )
        return with_handshake_tasks(found, self.extensions, protocol_version)

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        options = notification_options or NotificationOptions(
            prompts_changed=True, resources_changed=True, tools_changed=True
        )
        return super().create_initialization_options(options, experimental_capabilities, extensions)


class McpFront:
    """Builds the SDK servers and serves them behind gateway authentication."""

    def __init__(
        self,
        settings: Settings,
        servers: ServersSurface,
        authenticator: Authenticator,
        surfaces: Sequence[Surface] = (),
    ) -> None:
        self.settings = settings
        self.surfaces = list(surfaces)
        self.servers = servers
        self.authenticator = authenticator
        # Run once the search model is loaded in the background (a serving gateway
        # freezes what it loaded out of the garbage collector's scans, app.py).
        self.on_warm: Callable[[], None] | None = None
        search.configure(search_tuning.from_settings(settings))
        self.handlers = GatewayHandlers(
            servers,
            mode=settings.interface_mode,
            threshold=settings.interface_auto_threshold,
            page_size=settings.mcp_page_size,
            surfaces=surfaces,
        )
        # Which key opened which session (/mcp 2025-11-25 and /sse), how many each key
        # holds, which request ids are in flight: one rule for every path.
        self.sessions = SessionRegistry(settings.mcp_max_sessions_per_key)
        self.aggregate = self._server(INSTRUCTIONS)
        self.single = self._server(None)
        self.fast = servers.fast_lane(
            FastLaneParts(
                allowed_hosts=list(settings.mcp_allowed_hosts),
                allowed_origins=list(settings.mcp_allowed_origins),
                known_session=self._known_session,
                lister=ToolsListCache(self.handlers, self.aggregate.server_info_stamp),
                server_info=self.aggregate.server_info_stamp,
            )
        )
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=list(settings.mcp_allowed_hosts),
            allowed_origins=list(settings.mcp_allowed_origins),
        )
        self.sse = SseServerTransport(
            MESSAGES_PATH,
            security_settings=security,
            max_request_body_size=settings.max_request_bytes,
        )
        self.legacy = LegacySse(
            self.sse, self.aggregate, self.sessions, settings.mcp_session_idle_seconds
        )
        self.managers = {
            name: TrackedSessionManager(
                app=server,
                security_settings=security,
                session_idle_timeout=settings.mcp_session_idle_seconds,
                max_request_body_size=settings.max_request_bytes,
                on_discard=self.sessions.closed,
            )
            for name, server in (("aggregate", self.aggregate), ("single", self.single))
        }

    def _server(self, instructions: str | None) -> Server[Any]:
        # logging/setLevel and resources/subscribe are deprecated in 2026-07-28 but are
        # how 2025-11-25 clients work; the gateway serves both eras on purpose.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            return self._build_server(instructions)

    def _build_server(self, instructions: str | None) -> Server[Any]:
        h = self.handlers
        server = _GatewayServer(
            "mcp-gateway",
            version=__version__,
            instructions=instructions,
            get_tool_input_schema=self._input_schema,
            on_list_tools=h.list_tools,
            on_call_tool=h.call_tool,
            on_list_resources=h.list_resources,
            on_list_resource_templates=h.list_resource_templates,
            on_read_resource=h.read_resource,
            on_subscribe_resource=h.subscribe,
            on_unsubscribe_resource=h.unsubscribe,
            on_list_prompts=h.list_prompts,
            on_get_prompt=h.get_prompt,
            on_completion=h.complete,
            on_set_logging_level=h.set_logging_level,
            on_subscriptions_listen=GatewayListen(h),
        )

        async def remember(
            ctx: ServerRequestContext[Any, Any], call_next: CallNext
        ) -> HandlerResult:
            h.remember_connection(ctx)
            return await call_next(ctx)

        server.middleware.append(remember)
        serve_tasks(server, h, self.servers)
        if instructions is not None:  # /mcp, not one server's
            for surface in self.surfaces:
                surface.install(server, lambda ctx: h.context(ctx)[0])
        return server

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Run the session managers for the app's lifetime.

        Their anyio task groups must be entered and exited by one task; a lifespan
        may be exited by another (test runners do), so a task of our own owns them.
        """
        started, stop = asyncio.Event(), asyncio.Event()

        async def own() -> None:
            async with AsyncExitStack() as stack:
                for manager in self.managers.values():
                    await stack.enter_async_context(manager.run())
                started.set()
                await stop.wait()

        owner = asyncio.create_task(own(), name="mcp-session-managers")
        waiter = asyncio.ensure_future(started.wait())
        await asyncio.wait({owner, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if owner.done():
            owner.result()  # raises what went wrong
        if self.settings.search_preload and self.settings.search_dense_model != "off":
            search.preload(delay=PRELOAD_DELAY, after=self.on_warm)
        try:
            yield
        finally:
            stop.set()
            await owner

    # --- ASGI ---------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        _trim_header_values(scope)
        # The headers by name, for everything below and the fast path; when a name was
        # sent twice (None here), each reader walks the list for the value it reads.
        found = header_map(scope)
        headers = found if len(found) == len(scope["headers"]) else None
        target = (scope.get("path_params") or _NO_PARAMS).get("name")
        try:
            principal = await self._authenticate(scope, headers)
        except Unauthenticated as exc:
            challenge = [(b"www-authenticate", self._challenge(scope, exc).encode())]
            await send_error(send, 401, exc.code, exc.message, challenge)
            return
        session_id, single = _session_header(scope, headers)
        if not single:
            # The SDK reads the first, the fast path the last: one id is checked, another used.
            await ambiguous_session(send)
            return
        # The one session rule, before either path (SDK or fast) sees the request.
        if session_id is not None and not self.sessions.owns(session_id, principal):
            await session_not_found(send)
            return
        if target is not None and not self.servers.visible(principal, target):
            await send_error(send, 404, "server_not_found", f"no server named {target!r}")
            return
        scope[PRINCIPAL_KEY] = principal
        scope[TARGET_KEY] = target
        # For the SDK's pre-dispatch Mcp-Param header check (same task, no request object).
        CURRENT_CALLER.set((principal, target))
        scope.setdefault("state", {})["user_id"] = principal.user_id
        if scope["path"] == SSE_PATH:
            await self.legacy.stream(scope, receive, send, principal)
            return
        if scope["path"] == MESSAGES_PATH:
            await self.legacy.message(scope, receive, send, principal)
            return
        manager = self.managers["single" if target else "aggregate"]
        if scope["method"] != "POST":
            await self._sdk(manager, scope, receive, send, principal, session_id, None)
            return
        body = await _read_body(receive, self.settings.max_request_bytes)
        if body is None:
            await too_large(send, self.settings.max_request_bytes)
            return
        message, fast = _parse(body)
        # Who the agent is, for the audit rows of this request (audit/rows.py).
        scope["state"]["mcp_client"] = (
            self.sessions.client(session_id) if session_id is not None else client_info(message)
        )
        request_id = _request_id(message) if session_id is not None else None
        message_for_fast = message if fast else None
        if session_id is None or request_id is None:
            if self.fast is not None and await self.fast.serve(
                scope, receive, send, message_for_fast, principal, target
            ):
                return
            receive = _replay(body, receive)
            await self._sdk(manager, scope, receive, send, principal, session_id, message)
            return
        if not self.sessions.claim(session_id, request_id):
            await duplicate_id(send, request_id)
            return
        claimed = True

        def release() -> None:
            nonlocal claimed
            if claimed:
                claimed = False
                self.sessions.release(session_id, request_id)

        async def send_then_release(reply: Message) -> None:
            # Free the id before the response's end reaches the agent, which may reuse
            # it at once (the SDK has dropped its stream for the id by then).
            if reply["type"] == "http.response.body" and not reply.get("more_body", False):
                release()
            await send(reply)

        try:
            if self.fast is not None and await self.fast.serve(
                scope, receive, send_then_release, message_for_fast, principal, target
            ):
                return
            receive = _replay(body, receive)
            await self._sdk(
                manager, scope, receive, send_then_release, principal, session_id, message
            )
        finally:
            release()

    async def _sdk(
        self,
        manager: TrackedSessionManager,
        scope: Scope,
        receive: Receive,
        send: Send,
        principal: Principal,
        session_id: str | None,
        message: Any,
    ) -> None:
        """Hand the request to the SDK, recording a session it opens (within the key's cap)."""
        reserved = False
        if session_id is None and _opens_session(scope, message):
            if not self.sessions.reserve(principal):
                await too_many_sessions(
                    send,
                    self.sessions.held(principal),
                    self.sessions.max_per_key,
                    self.settings.mcp_session_idle_seconds,
                    message.get("id"),
                )
                return
            reserved = True

        async def remember_session(reply: Message) -> None:
            nonlocal reserved
            if reply["type"] == "http.response.start" and session_id is None:
                for name, value in reply.get("headers", []):
                    if name.lower() == SESSION_HEADER:
                        # Recorded before the agent can learn the id, so its next
                        # request finds the session owned.
                        self.sessions.opened(
                            value.decode("latin-1"),
                            principal,
                            reserved=reserved,
                            client=client_info(message, initialize=True),
                        )
                        reserved = False
            await send(reply)

        try:
            await manager.handle_request(
                scope, receive, json_sdk_errors(remember_session, scope["method"])
            )
        finally:
            if reserved:  # no session came of it (refused, failed, cancelled)
                self.sessions.unreserve(principal)

    def _known_session(self, session_id: str) -> bool:
        """A live 2025-11-25 session of the SDK's (SDK-internal: no public lookup)."""
        return any(live_server_session(m, session_id) for m in self.managers.values())

    def _input_schema(self, name: str) -> dict[str, Any] | None:
        """A tool's input schema from memory, so the SDK need not list every tool per call."""
        caller = CURRENT_CALLER.get()
        if caller is None:
            return None
        principal, target = caller
        return self.servers.input_schema(principal, target, name)

    async def _authenticate(self, scope: Scope, headers: dict[bytes, bytes] | None) -> Principal:
        found = (
            headers.get(b"authorization")
            if headers is not None
            else first_header(scope, b"authorization")
        )
        header = found.decode("latin-1") if found is not None else None
        if not header and (email := certificate_email(scope)) is not None:
            return await self.authenticator.authenticate_certificate(email)
        if not header and not self.settings.auth_required:
            return await self._development_principal()
        principal = await self.authenticator.authenticate(bearer_token(header))
        if principal.audience is not None:  # an OAuth token: for this endpoint only
            check_audience(principal, request_base(scope, self.settings.public_url), scope["path"])
        return principal

    def _challenge(self, scope: Scope, exc: Unauthenticated) -> str:
        """A 401's ``WWW-Authenticate``: where an MCP client finds how to get a token
        for this endpoint (RFC 9728), when the gateway's authorization server is on."""
        if not self.settings.advertises_oauth:
            return exc.challenge
        base = request_base(scope, self.settings.public_url)
        where = metadata_url(base, resource_path(scope["path"]) or UNIFIED)
        return exc.challenge_with(where, " ".join(MCP_SCOPES))

    async def _development_principal(self) -> Principal:
        key = self.settings.bootstrap_api_key
        if key is None:
            raise Unauthenticated(
                "MCPGW_AUTH_REQUIRED=false needs MCPGW_BOOTSTRAP_API_KEY to act as its admin"
            )
        return await self.authenticator.authenticate(key.get_secret_value())


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it grows past ``limit`` bytes."""
    message = await receive()
    body: bytes = message.get("body", b"") if message["type"] == "http.request" else b""
    if not message.get("more_body"):
        return body if len(body) <= limit else None
    chunks, size = [body], len(body)
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The request body again, for the SDK path after the fast path looked at it."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _parse(body: bytes) -> tuple[Any, bool]:
    """The request's JSON-RPC message (None if the body is not JSON: the SDK words that),
    and whether the fast path may take it.

    What orjson refuses but the SDK's parser takes (an integer id past 64 bits) is
    still parsed, so its id is held like any other; the fast path leaves it alone.
    """
    try:
        return orjson.loads(body), True
    except orjson.JSONDecodeError:
        try:
            return json.loads(body), False
        except ValueError:
            return None, False


def _request_id(message: Any) -> Any:
    """The id of a JSON-RPC request (not a notification or a response), else None."""
    if isinstance(message, dict) and isinstance(message.get("method"), str):
        return message.get("id")
    return None


def _opens_session(scope: Scope, message: Any) -> bool:
    """Would the SDK open a 2025-11-25 session for this request (an `initialize`)?"""
    version = _header(scope, PROTOCOL_HEADER)
    if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
        return False  # 2026-07-28: stateless, no session
    return isinstance(message, dict) and message.get("method") == "initialize"


def _trim_header_values(scope: Scope) -> None:
    """Drop the whitespace around header values, as HTTP parsing must (RFC 9110 §5.5).

    uvicorn's httptools parser keeps trailing spaces and tabs (h11 strips them), and
    the SDK compares `Mcp-Name`, `Mcp-Method` and `Mcp-Param-*` with the body as
    received: `Mcp-Name:  tool ` was refused as a header mismatch, and the fast path
    passed such calls to the SDK. The headers are rebuilt only when one needs it.
    """
    headers = scope.get("headers")
    if not headers:
        return
    for _, value in headers:  # about 0.1 us per header: bytes indexed as ints
        if value and (value[-1] in _OWS or value[0] in _OWS):
            scope["headers"] = [(key, value.strip(_OWS)) for key, value in headers]
            return


def _session_header(scope: Scope, headers: dict[bytes, bytes] | None) -> tuple[str | None, bool]:
    """The Mcp-Session-Id header, and False when it was sent more than once (``headers``:
    the request's by name when no name was repeated, else None)."""
    if headers is not None:  # the usual request: one lookup
        value = headers.get(SESSION_HEADER)
        return (value.decode("latin-1") if value is not None else None), True
    found: str | None = None
    for key, value in scope.get("headers", []):
        if key == SESSION_HEADER:
            if found is not None:
                return None, False
            found = value.decode("latin-1")
    return found, True


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


_CLIENT_INFO_META = "io.modelcontextprotocol/clientInfo"


def client_info(message: Any, *, initialize: bool = False) -> tuple[str | None, str | None] | None:
    """The agent's (name, version): from an initialize's ``clientInfo`` (2025-11-25
    sessions) or a request's ``_meta`` (2026-07-28, on every request)."""
    if not isinstance(message, dict):
        return None
    params = message.get("params")
    if not isinstance(params, dict):
        return None
    if initialize:
        info = params.get("clientInfo")
    else:
        meta = params.get("_meta")
        info = meta.get(_CLIENT_INFO_META) if isinstance(meta, dict) else None
    if not isinstance(info, dict):
        return None
    name, version = info.get("name"), info.get("version")
    return (
        name[:128] if isinstance(name, str) else None,
        version[:64] if isinstance(version, str) else None,
    )
