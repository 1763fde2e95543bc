"""The `tools/call` fast path: a well-formed call to a Streamable HTTP backend skips the
SDK on both sides.

The SDK server stack (session manager, transports, memory streams, pydantic
models) and the SDK client stack each cost close to a millisecond per call on
this class of machine. For the one request that matters for throughput, the
gateway instead checks the request itself, forwards the agent's JSON-RPC message
(tool name un-namespaced, id replaced) over a pooled keep-alive connection to the
backend session the SDK negotiated, and streams back what the backend sends:
the result with the agent's id restored, and, before it, progress and log
notifications and server-to-client requests (sampling, elicitation, roots), whose
answers are routed back to the backend.

Anything not plainly eligible — another method, a batch, headers the SDK would
reject, a session it does not know, a backend on another transport or a protocol
era the route cannot bridge — goes the SDK path unchanged, which stays the
reference behaviour. Eligibility is decided before anything is sent, so falling
back never repeats a call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from mcp.shared.inbound import decode_header_value
from mcp_types.jsonrpc import INVALID_PARAMS
from mcp_types.version import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    LATEST_HANDSHAKE_VERSION,
    MODERN_PROTOCOL_VERSIONS,
)
from starlette.types import Receive, Scope, Send

from gateway.asgi_headers import header_map
from gateway.asgi_replies import send_json
from gateway.auth.principal import Principal
from gateway.mcp.fastlist import ToolsListCache
from gateway.mcp.meta import EXECUTE_TOOL, SEARCH_TOOLS
from gateway.observability.tracing import TRACEPARENT
from gateway.policy.limits import JSONRPC_CODE, LimitExceeded
from gateway.servers.calls import CallTarget, find_target
from gateway.servers.controls import ArgumentsTooLarge
from gateway.servers.mcp.fastcall import FastCall, Retrying
from gateway.servers.mcp.fastrelay import abandon, settle
from gateway.servers.mcp.input_bridge import InputBridge
from gateway.servers.mcp.view import CatalogView
from gateway.servers.pipeline import Call, CallDenied, NotSent
from gateway.servers.resilience.retry import last_start
from gateway.servers.runtimes.direct import DirectRoute, next_id
from gateway.servers.runtimes.http_channel import ChannelError, encode_headers
from gateway.servers.runtimes.replicas import ReplicaSetRuntime
from gateway.servers.service import ServerService

log = logging.getLogger("gateway.mcp")

_MODERN_META_PREFIX = "io.modelcontextprotocol/"
_PROTOCOL_VERSION_META = _MODERN_META_PREFIX + "protocolVersion"
_ID_TYPES = (int, str)  # a JSON-RPC id's (a bool is refused before)
_EMPTY: dict[str, Any] = {}  # read only: a default for lookups
_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
_RELAYED = itertools.count(1)
_WATCH_DISCONNECT_AFTER = 0.05  # seconds


@dataclass
class FastRequest:
    """What the agent sent, once judged eligible."""

    id: Any
    params: dict[str, Any]
    modern: bool  # the agent's era
    session_id: str | None
    param_headers: dict[str, str]
    method: str = "tools/call"


@dataclass
class _Pending:
    """A server-to-client request relayed to an agent, awaiting its answer."""

    route: DirectRoute
    backend_id: Any
    session_id: str
    # Set for a request the backend asked outside any call (fastrelay.py): the answer
    # goes here, and the backend's SDK session replies, not this path.
    answer: asyncio.Future[dict[str, Any]] | None = None


class FastPath:
    """Serves eligible `tools/call` POSTs; see the module docstring."""

    def __init__(
        self,
        servers: ServerService,
        view: CatalogView,
        *,
        allowed_hosts: list[str],
        allowed_origins: list[str],
        known_session: Callable[[str], bool],
    ) -> None:
        self.servers = servers
        self.view = view
        self.allowed_hosts = allowed_hosts
        self.allowed_origins = allowed_origins
        self.known_session = known_session
        # (agent session, agent request id) → the call: for cancellation.
        self._in_flight: dict[tuple[str, Any], FastCall] = {}
        # relayed request id (ours) → where its answer goes
        self._pending: dict[str, _Pending] = {}
        self._hosts_seen: dict[tuple[bytes | None, bytes | None], bool] = {}
        # Calls whose 2025 backend asked a 2026 agent something (input_bridge.py).
        self.bridge = InputBridge(self._post_or_settle)
        # Serialised tools/list pages, and the `serverInfo` 2026-07-28 results carry (set
        # by the front once its SDK servers exist).
        self.lister: ToolsListCache | None = None
        self.server_info: dict[str, Any] | None = None

    # --- eligibility --------------------------------------------------------------------
    def _host_ok(self, host: bytes | None, origin: bytes | None) -> bool:
        """The DNS-rebinding check, remembered: agents send the same few values."""
        key = (host, origin)
        verdict = self._hosts_seen.get(key)
        if verdict is None:
            verdict = _allowed(host, self.allowed_hosts, required=True) and _allowed(
                origin, self.allowed_origins, required=False
            )
            if len(self._hosts_seen) >= 1024:
                self._hosts_seen.clear()
            self._hosts_seen[key] = verdict
        return verdict

    def _request(self, scope: Scope, message: Any) -> FastRequest | dict[str, Any] | None:
        """The call if eligible; a JSON-RPC message to route (answer/cancel) ; else None."""
        headers = _headers(scope)
        if not headers.get(b"content-type", b"").lower().startswith(b"application/json"):
            return None
        # bytes.find, not `in`: `b"..." in some_bytes` first tries the needle as an int
        # and raises (and drops) a TypeError inside CPython, ~2,000 instructions each.
        accept = headers.get(b"accept", b"")
        if accept.find(b"application/json") < 0 or accept.find(b"text/event-stream") < 0:
            return None
        if not self._host_ok(headers.get(b"host"), headers.get(b"origin")):
            return None
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return None
        version = headers.get(b"mcp-protocol-version", b"").decode("latin-1")
        session = headers.get(b"mcp-session-id")
        session_id = session.decode("latin-1") if session is not None else None
        if "method" not in message:
            return message if session_id is not None and self._pending else None
        if message["method"] == "notifications/cancelled":
            return message if session_id is not None and self._in_flight else None
        method = message["method"]
        listing = method == "tools/list"
        if not listing and method != "tools/call":
            return None
        request_id = message.get("id")
        params = message.get("params", {} if listing else None)
        if (
            isinstance(request_id, bool)
            or not isinstance(request_id, _ID_TYPES)
            or not isinstance(params, dict)
            or not isinstance(params.get("_meta", _EMPTY), dict)
        ):
            return None
        if listing:
            if not isinstance(params.get("cursor", ""), str):
                return None
        elif (
            not isinstance(params.get("name"), str)
            or not isinstance(params.get("arguments", _EMPTY), dict)
            or "task" in params  # a 2025-11-25 task-augmented call: servers/mcp/tasks.py
        ):
            return None
        if session_id is not None:
            if version not in HANDSHAKE_PROTOCOL_VERSIONS or not self.known_session(session_id):
                return None
            return FastRequest(request_id, params, False, session_id, {}, method)
        if version not in MODERN_PROTOCOL_VERSIONS:
            return None
        meta = params.get("_meta") or _EMPTY
        if (
            headers.get(b"mcp-method") != method.encode()
            or meta.get(_PROTOCOL_VERSION_META) != version
            or (not listing and not _names(headers.get(b"mcp-name", b""), params["name"]))
        ):
            return None
        param_headers: dict[str, str] = {}
        # Most calls carry no Mcp-Param-* headers: one search over the names says so.
        if b"\n".join(headers).find(b"mcp-param-") >= 0:
            param_headers = {
                k.decode("latin-1"): v.decode("latin-1")
                for k, v in headers.items()
                if k.startswith(b"mcp-param-")
            }
        return FastRequest(request_id, params, True, None, param_headers, method)

    def _route(
        self,
        principal: Principal,
        target: str | None,
        name: str,
        modern: bool,
        session_id: str | None,
    ) -> tuple[CallTarget, DirectRoute] | None:
        if target is None and name in (SEARCH_TOOLS, EXECUTE_TOOL):
            return None
        found = find_target(self.servers, principal, name, target)
        # A tool the catalog lists (a dict lookup): an unknown one goes the SDK path,
        # which passes the backend's own error on; so does one that may run as an MCP
        # task (servers/mcp/tasks.py decides there whether it does).
        entry = self.view.server_entry(found.server, found.tool) if found is not None else None
        if found is None or entry is None or entry[1] is not None:
            return None
        # The session of the agent's era where the backend keeps both (runtimes/dual.py).
        # A 2025 agent's session stays on one replica of a replicated server.
        route = found.runtime.direct_route(modern=modern, affinity=None if modern else session_id)
        if route is None:
            return None
        return found, route

    # --- serving ------------------------------------------------------------------------
    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        message: Any,
        principal: Principal,
        target: str | None,
    ) -> bool:
        """Serve the POST if eligible; False means: take the SDK path (nothing was sent).

        ``message`` is the POST's parsed body. The front has already checked what is
        the same for both paths: the caller owns the session named, and no request
        with this id is in flight in it (so ``_in_flight`` keys are unique).
        """
        found = self._request(scope, message)
        if found is None:
            return False
        if isinstance(found, dict):
            return await self._route_message(found, scope, send)
        request = found
        if request.method == "tools/list":
            if self.lister is None:
                return False
            version = _version(request) if request.modern else LATEST_HANDSHAKE_VERSION
            cursor = request.params.get("cursor")
            return await self.lister.serve(
                scope, send, principal, target, cursor, version, request.id, request.session_id
            )
        if request.modern:
            issuer = InputBridge.issuer(request.params.get("requestState"))
            if issuer == "fast":
                return await self._resume(scope, receive, send, request, principal)
            if issuer == "sdk":
                return False  # a call parked on the SDK path: it resumes it (not run again)
        routed = self._route(
            principal, target, request.params["name"], request.modern, request.session_id
        )
        if routed is None:
            return False
        called, route = routed
        if route.modern and not request.modern:
            return False  # a 2025 agent cannot answer a 2026 backend's input_required
        if request.modern and route.modern and route.protocol_version != _version(request):
            return False
        arguments = request.params.get("arguments") or {}
        transform = called.transform
        fixed = transform is not None and transform.touches_arguments
        if fixed:
            if request.param_headers:
                return False  # headers that may name a fixed argument: the SDK path words them
            # The transform stage fills this dict in place: the one that is sent.
            arguments = dict(arguments)
        owner = (principal.user_id, principal.key_id)
        # The backend's request id is drawn once the call goes there (an answer from a
        # stage, such as the response cache's, needs none).
        call = FastCall(self, route, request, "", scope, send, owner, called)
        replicas = called.runtime if type(called.runtime) is ReplicaSetRuntime else None
        if replicas is not None:
            call.reroutable = True
        piped = Call(principal, called, arguments, "direct", origin=call)
        piped.meta = request.params.get("_meta")
        try:
            entered = await self._enter(piped, call)
        except NotSent:  # a stage wants what only the SDK path does (ask for approval)
            return False
        if entered is None:
            return True  # refused, or answered by a stage
        # On to the backend: the request as it expects it.
        call.backend_id = backend_id = next_id()
        params = dict(request.params)
        params["name"] = tool = called.backend  # a renamed tool: the backend's own name
        if fixed:
            params["arguments"] = arguments
        if request.modern and not route.modern:
            meta = {
                k: v
                for k, v in (params.get("_meta") or {}).items()
                if not k.startswith(_MODERN_META_PREFIX)
            }
            if meta:
                params["_meta"] = meta
            else:
                params.pop("_meta", None)
        call.keep = piped.cache is not None  # the response cache wants the answer
        headers: dict[str, str] | bytes
        if request.param_headers and route.modern:
            headers = route.headers("tools/call", tool)
            headers.update(request.param_headers)
        else:
            headers = route.encoded_headers("tools/call", tool)
        trace = piped.trace
        if trace is not None and trace.carrier:  # the trace goes on to the backend
            params, headers = _propagate(params, headers, trace.carrier)
        payload = orjson.dumps(
            {"jsonrpc": "2.0", "id": backend_id, "method": "tools/call", "params": params}
        )
        # The tool's, the server's or the global timeout (limits.py): a None check when
        # the server has no limits of its own.
        limits = called.runtime.spec.limits
        timeout = self.servers.call_timeout
        if limits is not None:
            timeout = limits.timeout_for(tool, timeout)
        work = partial(call.exchange, payload, headers)
        plan = piped.resilience.retry if piped.resilience is not None else None
        if plan is not None:  # a retry-safe tool (resilience/retry.py)
            latest = last_start(plan, asyncio.get_running_loop().time(), timeout)
            body = {"jsonrpc": "2.0", "method": "tools/call", "params": params}
            work = partial(
                call.exchange_retrying,
                lambda attempt_id: orjson.dumps({**body, "id": attempt_id}),
                headers,
                Retrying(piped.resilience, latest),
            )
        # The backend stage, inline: a frame of its own would be resumed each time the
        # exchange waits (see pipeline.py).
        key = (request.session_id, request.id) if request.session_id else None
        if key is not None:
            self._in_flight[key] = call
        limiter = route.semaphore
        route.health.in_flight += 1
        # A caller of the backend's session while in flight: what the backend asks on the
        # session's own stream comes to this call's agent (fastrelay.py).
        callers = route.callers
        callers.add(call)
        try:
            if not limiter.try_acquire():
                await limiter.acquire()
            try:
                done = await call.run(work, timeout, receive)
            finally:
                limiter.release()
            if replicas is not None and call.fault == "server":
                replicas.route_failed(route)  # out until it answers again (replicas.py)
                if replicas.any_up():
                    call.fault = "replica"  # one replica's failure, not the server's
        except BaseException as exc:
            self.servers.pipeline.leave(piped, entered, exc)
            raise
        finally:
            route.health.in_flight -= 1
            callers.discard(call)
            if call.asking is not None:
                abandon(call)
            if key is not None:
                self._in_flight.pop(key, None)
        return self._left(piped, entered, call, done)

    # The call pipeline's stages around the fast path's own backend stage, entered and
    # left here rather than through Pipeline.run: no frame of its stays on the stack
    # while the exchange waits (see pipeline.py).
    async def _enter(self, piped: Call, call: FastCall) -> int | None:
        """Enter the pipeline's stages; None when one refused or answered the call (the
        agent has its answer then)."""
        pipeline = self.servers.pipeline
        try:
            entered = await pipeline.enter(piped)
        except ArgumentsTooLarge as exc:  # as a body over the global limit: a JSON-RPC error
            await call.reject(exc.rpc_code, exc.message, exc.rpc_data())
            call.scope.setdefault("state", {})["route"] = "direct"
            return None
        except CallDenied as exc:
            await call.refuse(exc.message)
            call.scope.setdefault("state", {})["route"] = "direct"
            return None
        except LimitExceeded as exc:
            await call.reject(JSONRPC_CODE, exc.message, exc.rpc_data())
            call.scope.setdefault("state", {})["route"] = "direct"
            return None
        admission = piped.admission
        if admission is not None and admission.warnings:
            call.warnings = admission.warnings
        if piped.answer is not None:
            await call.answer_with(piped.answer)
            pipeline.leave(piped, entered, None)
            call.scope.setdefault("state", {})["route"] = "direct"
            return None
        return entered

    def _left(self, piped: Call, entered: int, call: FastCall, done: bool | None) -> bool:
        """Leave the stages with the backend's outcome; False: nothing was sent."""
        if done is None:
            self.servers.pipeline.leave(piped, entered, NotSent())
            return False
        piped.outcome = call.outcome  # type: ignore[assignment]
        piped.error, piped.bytes_out, piped.fault = call.failure, call.sent, call.fault
        if call.kept is not None:
            piped.result = call.kept  # for the response cache
        self.servers.pipeline.leave(piped, entered, None)
        call.scope.setdefault("state", {})["route"] = "direct"
        return True

    async def _resume(
        self, scope: Scope, receive: Receive, send: Send, request: FastRequest, principal: Principal
    ) -> bool:
        """A 2026 agent's retry of a call whose 2025 backend asked it something."""
        owner = (principal.user_id, principal.key_id)
        pending = self.bridge.take(request.params["requestState"], owner)
        if pending is None:
            await send_json(
                send,
                {
                    "jsonrpc": "2.0",
                    "id": request.id,
                    "error": {
                        "code": INVALID_PARAMS,
                        "message": "requestState is unknown or has expired (it lives on the "
                        "gateway process that issued it): call the tool again without it",
                    },
                },
                400,
            )
            return True
        call = FastCall(
            self, pending.route, request, pending.backend_id, scope, send, owner, pending.target
        )

        async def answer_then_follow() -> bool:
            await self.bridge.answer(pending, request.params.get("inputResponses"))
            return await call.follow(pending)

        piped = Call(principal, pending.target, request.params.get("arguments") or {}, "direct")
        piped.cache = "skip"  # its answer depends on what the agent answered
        entered = await self._enter(piped, call)
        if entered is None:
            return True
        try:
            timeout = self.servers.timeout_for(pending.target)
            done = await call.run(answer_then_follow, timeout, receive)
        except BaseException as exc:
            self.servers.pipeline.leave(piped, entered, exc)
            raise
        self._left(piped, entered, call, bool(done))
        return True

    async def _route_message(self, message: dict[str, Any], scope: Scope, send: Send) -> bool:
        """An agent's answer to a relayed request, or its cancel of a fast call."""
        session = _headers(scope).get(b"mcp-session-id", b"").decode("latin-1")
        if "method" in message:  # notifications/cancelled
            params = message.get("params")
            request_id = params.get("requestId") if isinstance(params, dict) else None
            try:
                found = self._in_flight.get((session, request_id))
            except TypeError:  # an unhashable id: not ours
                return False
            if found is None or not isinstance(params, dict):
                return False
            # Stopping closes the backend connection carrying the call (what JSON-mode
            # and stateless backends go by); a session's backend also hears it said.
            found.stop("cancelled")
            forward = dict(message)
            forward["params"] = {**params, "requestId": found.backend_id}
            await self._post_quietly(found.route, forward, "notifications/cancelled")
            await _accepted(send)
            return True
        answer_id = message.get("id")
        if not isinstance(answer_id, str):
            return False
        pending = self._pending.get(answer_id)
        if pending is None or pending.session_id != session:
            return False
        del self._pending[answer_id]
        if pending.answer is not None:  # asked outside a call: for the waiting relay
            settle(pending.answer, message)
            await _accepted(send)
            return True
        forward = dict(message)
        forward["id"] = pending.backend_id
        await self._post_quietly(pending.route, forward, None)
        await _accepted(send)
        return True

    async def _post_quietly(
        self, route: DirectRoute, message: dict[str, Any], method: str | None
    ) -> None:
        try:
            async with route.channel.post(
                orjson.dumps(message), route.encoded_headers(method or "")
            ) as response:
                await response.read()
        except ChannelError as exc:
            log.info(
                "could not forward to backend", extra={"server": route.server, "error": str(exc)}
            )

    async def _post_or_settle(
        self, route: DirectRoute, message: dict[str, Any], method: str | None
    ) -> None:
        """The input bridge's way to a backend: a reply to a question the backend asked
        outside any call goes to the future awaiting it (fastrelay.py), not on the route."""
        answer_id = message.get("id")
        if method is None and isinstance(answer_id, str) and self._pending:
            pending = self._pending.get(answer_id)
            if pending is not None and pending.answer is not None and pending.route is route:
                settle(pending.answer, message)
                return
        await self._post_quietly(route, message, method)

    def relay_request(
        self,
        route: DirectRoute,
        message: dict[str, Any],
        session_id: str,
        answer: asyncio.Future[dict[str, Any]] | None = None,
    ) -> bytes:
        """A backend's server-to-client request, re-numbered for the agent; its answer goes
        back to the backend, or to ``answer`` when given (then forgotten once settled)."""
        ours = f"mcpgw-relay-{next(_RELAYED)}"
        self._pending[ours] = _Pending(route, message["id"], session_id, answer)
        if answer is not None:
            answer.add_done_callback(lambda _: self._pending.pop(ours, None))
        while len(self._pending) > 10_000:  # answers that never came
            self._pending.pop(next(iter(self._pending)))
        return orjson.dumps({**message, "id": ours})


async def _accepted(send: Send) -> None:
    await send({"type": "http.response.start", "status": 202, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return header_map(scope)  # made once per request, shared with the front


def _propagate(
    params: dict[str, Any], headers: dict[str, str] | bytes, carrier: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str] | bytes]:
    """The call's trace context for the backend: in `params._meta` (what an MCP server
    reads) and as HTTP headers (what its HTTP stack reads); the agent's own W3C fields
    are replaced, as the gateway's span is the backend's parent."""
    meta = params.get("_meta")
    params["_meta"] = {**meta, **carrier} if isinstance(meta, dict) else dict(carrier)
    if isinstance(headers, dict):
        return params, {**headers, **carrier}
    if len(carrier) == 1:  # `traceparent` alone (no `tracestate`): the usual case
        return params, headers + b"\r\ntraceparent: " + carrier[TRACEPARENT].encode("latin-1")
    return params, headers + encode_headers(carrier)


def _version(request: FastRequest) -> Any:
    return (request.params.get("_meta") or _EMPTY).get(_PROTOCOL_VERSION_META)


def _names(header: bytes, name: str) -> bool:
    """Whether an Mcp-Name header names the tool ``name``: verbatim (one comparison),
    or in the SDK's encoded form (its decoder says)."""
    text = header.decode("latin-1")
    if text == name and not text.startswith("=?base64?"):
        return True
    return decode_header_value(text) == name


def _allowed(value: bytes | None, allowed: list[str], *, required: bool) -> bool:
    """The SDK's DNS-rebinding rule: exact match or a `host:*` port wildcard."""
    if not value:
        return not required
    text = value.decode("latin-1")
    if text in allowed:
        return True
    return any(a.endswith(":*") and text.startswith(a[:-1]) for a in allowed)
