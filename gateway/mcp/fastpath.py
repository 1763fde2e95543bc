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
import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import orjson
from mcp.shared.inbound import ERROR_CODE_HTTP_STATUS, decode_header_value
from mcp_types.version import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    LATEST_HANDSHAKE_VERSION,
    MODERN_PROTOCOL_VERSIONS,
)
from starlette.types import Receive, Scope, Send

from gateway.auth.principal import Principal
from gateway.mcp.fastlist import ToolsListCache
from gateway.mcp.meta import EXECUTE_TOOL, SEARCH_TOOLS
from gateway.mcp.view import CatalogView
from gateway.servers.runtimes.direct import DirectRoute, next_id
from gateway.servers.runtimes.direct_stream import backend_messages
from gateway.servers.runtimes.http_channel import ChannelError
from gateway.servers.service import ServerService

log = logging.getLogger("gateway.mcp")

_MODERN_META_PREFIX = "io.modelcontextprotocol/"
_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
_RELAYED = itertools.count(1)
_WATCH_DISCONNECT_AFTER = 0.05  # seconds

# (server, route, seconds, succeeded): metrics for every answered call
CallRecorder = Callable[[str, str, float, bool], None]


@dataclass
class _Request:
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
        record: CallRecorder | None = None,
    ) -> None:
        self.servers = servers
        self.view = view
        self.allowed_hosts = allowed_hosts
        self.allowed_origins = allowed_origins
        self.known_session = known_session
        self.record = record
        # (agent session, agent request id) → (route, backend id): for cancellation.
        self._in_flight: dict[tuple[str, Any], tuple[DirectRoute, str]] = {}
        # relayed request id (ours) → where its answer goes
        self._pending: dict[str, _Pending] = {}
        self._hosts_seen: dict[tuple[bytes | None, bytes | None], bool] = {}
        # Serialised tools/list pages (set by the front once its SDK servers exist).
        self.lister: ToolsListCache | None = None

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

    def _request(self, scope: Scope, message: Any) -> _Request | dict[str, Any] | None:
        """The call if eligible; a JSON-RPC message to route (answer/cancel) ; else None."""
        headers = _headers(scope)
        if not headers.get(b"content-type", b"").lower().startswith(b"application/json"):
            return None
        accept = headers.get(b"accept", b"")
        if b"application/json" not in accept or b"text/event-stream" not in accept:
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
            or not isinstance(request_id, int | str)
            or not isinstance(params, dict)
            or not isinstance(params.get("_meta", {}), dict)
        ):
            return None
        if listing:
            if not isinstance(params.get("cursor", ""), str):
                return None
        elif not isinstance(params.get("name"), str) or not isinstance(
            params.get("arguments", {}), dict
        ):
            return None
        if session_id is not None:
            if version not in HANDSHAKE_PROTOCOL_VERSIONS or not self.known_session(session_id):
                return None
            return _Request(request_id, params, False, session_id, {}, method)
        if version not in MODERN_PROTOCOL_VERSIONS:
            return None
        meta = params.get("_meta") or {}
        if (
            headers.get(b"mcp-method") != method.encode()
            or meta.get(_MODERN_META_PREFIX + "protocolVersion") != version
            or (
                not listing
                and decode_header_value(headers.get(b"mcp-name", b"").decode("latin-1"))
                != params["name"]
            )
        ):
            return None
        param_headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in headers.items()
            if k.startswith(b"mcp-param-")
        }
        return _Request(request_id, params, True, None, param_headers, method)

    def _route(
        self, principal: Principal, target: str | None, name: str, modern: bool
    ) -> tuple[str, str, DirectRoute] | None:
        if target is None and name in (SEARCH_TOOLS, EXECUTE_TOOL):
            return None
        if not principal.can("tools:execute"):
            return None  # the SDK path words the refusal
        if target is not None:
            server, tool = target, name
            if self.view.server_schema(server, tool) is None:  # a dict lookup, not a scan
                return None
        else:
            found = self.view.tools_for(principal).by_name.get(name)
            if found is None:
                return None
            server, tool = found
        runtime = self.servers.visible_runtime(principal, server)
        direct = getattr(runtime, "direct_route", None)
        # The session of the agent's era where the backend keeps both (runtimes/dual.py).
        route: DirectRoute | None = direct(modern=modern) if direct is not None else None
        if route is None:
            return None
        return server, tool, route

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
        routed = self._route(principal, target, request.params["name"], request.modern)
        if routed is None:
            return False
        server, tool, route = routed
        if route.modern and not request.modern:
            return False  # a 2025 agent cannot answer a 2026 backend's input_required
        if request.modern and route.modern and route.protocol_version != _version(request):
            return False
        params = dict(request.params)
        params["name"] = tool
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
        backend_id = next_id()
        payload = orjson.dumps(
            {"jsonrpc": "2.0", "id": backend_id, "method": "tools/call", "params": params}
        )
        headers: dict[str, str] | bytes
        if request.param_headers and route.modern:
            headers = route.headers("tools/call", tool)
            headers.update(request.param_headers)
        else:
            headers = route.encoded_headers("tools/call", tool)
        started = time.perf_counter()
        call = _Call(self, route, request, backend_id, scope, send)
        key = (request.session_id, request.id) if request.session_id else None
        if key is not None:
            self._in_flight[key] = (route, backend_id)
        limiter = route.semaphore
        route.health.in_flight += 1
        try:
            if not limiter.try_acquire():
                await limiter.acquire()
            try:
                done = await call.run(payload, headers, self.servers.call_timeout, receive)
            finally:
                limiter.release()
        finally:
            route.health.in_flight -= 1
            if key is not None:
                self._in_flight.pop(key, None)
        if done is None:
            return False
        scope.setdefault("state", {})["route"] = "direct"
        if self.record is not None:
            self.record(server, "direct", time.perf_counter() - started, done)
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
            route, backend_id = found
            forward = dict(message)
            forward["params"] = {**params, "requestId": backend_id}
            await self._post_quietly(route, forward, "notifications/cancelled")
            await _accepted(send)
            return True
        answer_id = message.get("id")
        if not isinstance(answer_id, str):
            return False
        pending = self._pending.get(answer_id)
        if pending is None or pending.session_id != session:
            return False
        del self._pending[answer_id]
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

    def relay_request(self, route: DirectRoute, message: dict[str, Any], session_id: str) -> bytes:
        """A backend's server-to-client request, re-numbered for the agent."""
        ours = f"mcpgw-relay-{next(_RELAYED)}"
        self._pending[ours] = _Pending(route, message["id"], session_id)
        while len(self._pending) > 10_000:  # answers that never came
            self._pending.pop(next(iter(self._pending)))
        return orjson.dumps({**message, "id": ours})


class _Call:
    """One fast `tools/call`: backend response in, agent response out."""

    def __init__(
        self,
        fast: FastPath,
        route: DirectRoute,
        request: _Request,
        backend_id: str,
        scope: Scope,
        send: Send,
    ) -> None:
        self.fast = fast
        self.route = route
        self.request = request
        self.backend_id = backend_id
        self.send = send
        self.streaming = False
        # Says which path served the call (operators, tests); costs nothing.
        self.extra_headers: list[tuple[bytes, bytes]] = [(b"mcpgw-route", b"direct")]
        if request.session_id is not None:
            self.extra_headers.append((b"mcp-session-id", request.session_id.encode("latin-1")))

    async def run(
        self, payload: bytes, headers: dict[str, str] | bytes, timeout: float, receive: Receive
    ) -> bool | None:
        """True/False: answered (tool succeeded / failed); None: not sent, take the SDK path."""
        # One timer does both jobs, set up per call without a task: after a moment it
        # starts watching for the agent going away (2026-07-28's cancel signal; watching
        # needs a task, which costs more than a fast call does, and a disconnect that
        # came earlier is seen at once: the server remembers it); at the deadline it
        # times the call out.
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        deadline = loop.time() + timeout
        stopped_by: str | None = None  # "agent" (went away) or "timeout"
        watcher: asyncio.Future[None] | None = None
        timer: asyncio.TimerHandle

        def stop(reason: str) -> None:
            nonlocal stopped_by
            if stopped_by is None:
                stopped_by = reason
                task.cancel()

        def on_disconnect(future: asyncio.Future[None]) -> None:
            if not future.cancelled():
                stop("agent")

        def on_timer() -> None:
            nonlocal watcher, timer
            if loop.time() >= deadline:
                stop("timeout")
                return
            watcher = asyncio.ensure_future(_wait_disconnect(receive))
            watcher.add_done_callback(on_disconnect)
            timer = loop.call_at(deadline, stop, "timeout")

        timer = loop.call_at(min(deadline, loop.time() + _WATCH_DISCONNECT_AFTER), on_timer)
        try:
            return await self._exchange(payload, headers)
        except asyncio.CancelledError:
            if stopped_by is None or task.uncancel() > 0:
                raise  # cancelled from outside (shutdown), not by us
            if not self.route.modern:
                # A 2026 backend sees the connection close; a 2025 one needs telling.
                reason = "the client went away" if stopped_by == "agent" else "timed out"
                cancel = {"requestId": self.backend_id, "reason": f"{reason} at the gateway"}
                await self.fast._post_quietly(
                    self.route,
                    {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel},
                    "notifications/cancelled",
                )
            if stopped_by == "agent":
                return False
            return await self._finish_error(
                f"tool call on server {self.route.server!r} timed out after {timeout:g}s"
            )
        except ChannelError as exc:
            if not exc.sent:
                return None
            return await self._finish_error(
                f"server {self.route.server!r} failed during the call: {exc}"
            )
        finally:
            timer.cancel()
            if watcher is not None:
                watcher.remove_done_callback(on_disconnect)
                watcher.cancel()

    async def _exchange(self, payload: bytes, headers: dict[str, str] | bytes) -> bool | None:
        route = self.route
        async with route.channel.post(payload, headers) as response:
            if response.status == 404 and not route.modern and route.target.session_id:
                await response.read()
                route.target.expired = True
                return None  # the backend forgot the session; the SDK path starts a new one
            kind = response.content_type
            if kind == b"application/json":
                body = route.mask(await response.read())
                return await self._message(body, final_only=True)
            if kind == b"text/event-stream" and response.status == 200:
                async with aclosing(backend_messages(route, response)) as messages:
                    async for data in messages:
                        finished = await self._message(route.mask(data), final_only=False)
                        if finished is not None:
                            return finished
                return await self._finish_error(
                    f"server {route.server!r} closed the stream without answering"
                )
            await response.read()
            return await self._finish_error(
                f"server {route.server!r} answered HTTP {response.status}"
            )

    async def _message(self, data: bytes, *, final_only: bool) -> bool | None:
        """Handle one backend message; returns the call's outcome once it is answered."""
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            # Bytes that are not UTF-8 are read as U+FFFD, as the SDK client reads them.
            try:
                message = orjson.loads(data.decode("utf-8", errors="replace"))
            except orjson.JSONDecodeError:
                return await self._finish_error(f"server {self.route.server!r} sent invalid JSON")
            data = orjson.dumps(message)
        if not isinstance(message, dict):
            return await self._finish_error(f"server {self.route.server!r} sent a batch")
        if message.get("id") == self.backend_id and "method" not in message:
            return await self._answer(message)
        if final_only:
            return await self._finish_error(
                f"server {self.route.server!r} answered another request"
            )
        if "method" in message and "id" in message:
            if self.request.session_id is None:
                # No session, no way back: refuse it for the agent (as the SDK path does).
                await self.fast._post_quietly(
                    self.route,
                    {
                        "jsonrpc": "2.0",
                        "id": message["id"],
                        "error": {
                            "code": -32601,
                            "message": f"{message['method']} is not available here",
                        },
                    },
                    None,
                )
                return None
            await self._stream(
                self.fast.relay_request(self.route, message, self.request.session_id)
            )
            return None
        if "method" in message:
            await self._stream(data)
        return None

    async def _answer(self, message: dict[str, Any]) -> bool:
        message["id"] = self.request.id
        result = message.get("result")
        ok = "error" not in message
        if isinstance(result, dict):
            if self.request.modern:
                # Required in 2026-07-28; older backends (and some newer) leave it out.
                result.setdefault("resultType", "complete")
            ok = not result.get("isError", False)
        body = orjson.dumps(message)
        if self.streaming:
            await self._stream(body)
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            status = 200
            error = message.get("error")
            if self.request.modern and isinstance(error, dict):
                # 2026-07-28 maps JSON-RPC errors to HTTP statuses (the SDK's table).
                status = ERROR_CODE_HTTP_STATUS.get(error.get("code"), 200)  # type: ignore[arg-type]
            await self._json(body, status)
        return ok

    async def _finish_error(self, text: str) -> bool:
        """The call failed at the backend: a tool error result, as on the SDK path."""
        result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
        if self.request.modern:
            result["resultType"] = "complete"
        await self._answer({"jsonrpc": "2.0", "id": self.backend_id, "result": result})
        return False

    async def _json(self, body: bytes, status: int = 200) -> None:
        headers = [
            *_JSON_HEADERS,
            (b"content-length", str(len(body)).encode()),
            *self.extra_headers,
        ]
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    async def _stream(self, data: bytes) -> None:
        if not self.streaming:
            self.streaming = True
            await self.send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*_SSE_HEADERS, *self.extra_headers],
                }
            )
        await self.send(
            {
                "type": "http.response.body",
                "body": b"event: message\r\ndata: " + data + b"\r\n\r\n",
                "more_body": True,
            }
        )


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _accepted(send: Send) -> None:
    await send({"type": "http.response.start", "status": 202, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return dict(scope.get("headers", []))


def _version(request: _Request) -> Any:
    return (request.params.get("_meta") or {}).get(_MODERN_META_PREFIX + "protocolVersion")


def _allowed(value: bytes | None, allowed: list[str], *, required: bool) -> bool:
    """The SDK's DNS-rebinding rule: exact match or a `host:*` port wildcard."""
    if not value:
        return not required
    text = value.decode("latin-1")
    if text in allowed:
        return True
    return any(a.endswith(":*") and text.startswith(a[:-1]) for a in allowed)
