"""Pure-ASGI middleware (no BaseHTTPMiddleware: it costs a task per request).

- :class:`RequestContextMiddleware`: request id in and out, one access log line
  per request, and a JSON 500 for anything unhandled so no crash escapes; while
  tracing is on, the agent's W3C ``traceparent`` in and the serving span's out.
- :class:`BodySizeLimitMiddleware`: 413 for bodies over the limit, whether the
  client announced the length or streams it.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time

from mcp_types.jsonrpc import INVALID_REQUEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.asgi_replies import send_error, send_jsonrpc_error
from gateway.audit.entry import REQUEST_SCOPE
from gateway.observability.logging import reset_request_id, set_request_id
from gateway.observability.metrics import Metrics
from gateway.observability.tracing import (
    REQUEST_TRACE,
    TRACE_STATE_KEY,
    RequestTrace,
    Telemetry,
)

access_log = logging.getLogger("gateway.access")
error_log = logging.getLogger("gateway.errors")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Request ids need to be unique, not secret: a random per-process prefix and a counter
# (uuid4 reads the OS random source on every request).
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """A request id unique across processes and restarts (32 hex characters)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def route_template(scope: Scope) -> str:
    """The path's route as declared (``/api/v1/servers/{name}``): ids not expanded, so
    the metric's series stay few; paths no route matched are ``other``."""
    path: str = scope["path"]
    if path == "/mcp":  # the endpoint agents call most: its own template, whatever served it
        return path
    # FastAPI records the matched route with its router's prefix in its own scope key
    # (`route.path` lacks the prefix of an included router).
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    template = getattr(context, "path_format", None) or getattr(scope.get("route"), "path", None)
    if isinstance(template, str):
        return template
    if path in ("/sse", "/messages/", "/metrics", "/healthz", "/readyz"):
        return path
    if path.startswith("/mcp/servers/"):
        return "/mcp/servers/{name}"
    return "other"


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        telemetry: Telemetry | None = None,
        metrics: Metrics | None = None,
        *,
        rest: bool = False,
    ) -> None:
        self.app = app
        # Inside FastAPI's stack, whose requests have a span of their own while tracing
        # is on (observability/instruments.py): the response names it. Not on /mcp,
        # served before that stack, where a session's task may carry another context.
        self.rest = rest
        # Requests counted by route template (mcpgw_http_requests).
        self.metrics = metrics
        # While tracing is on: the agent's `traceparent` read, the serving span's sent back.
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        telemetry = self.telemetry
        generation = telemetry.generation if telemetry is not None else None
        incoming: dict[str, str] | None = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _VALID_REQUEST_ID.match(candidate):
                    request_id = candidate
                if generation is None:
                    break
            elif generation is not None and (name == b"traceparent" or name == b"tracestate"):
                # The agent's W3C context, read in the same pass (tracing on only).
                if incoming is None:
                    incoming = {}
                incoming[name.decode()] = value.decode("latin-1")
        request_id = request_id or new_request_id()
        token = set_request_id(request_id)
        scope_token = REQUEST_SCOPE.set(scope)
        started = time.perf_counter()
        status = 500
        response_started = False
        rid_header = (b"x-request-id", request_id.encode())
        trace = trace_token = None
        if generation is not None:
            trace = RequestTrace(incoming, None, generation)
            trace_token = REQUEST_TRACE.set(trace)
            scope.setdefault("state", {})[TRACE_STATE_KEY] = trace

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), rid_header]
                if trace is not None:
                    served = trace.served(self.rest)
                    if served is not None:
                        message["headers"].append((b"traceparent", served.encode("latin-1")))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            error_log.exception("unhandled error", extra={"path": scope.get("path")})
            if not response_started:
                await send_error(
                    send_wrapper,
                    500,
                    "internal_error",
                    "the gateway hit an unexpected error; the request id identifies it in the logs",
                    request_id=request_id,
                )
        finally:
            if self.metrics is not None:
                self.metrics.record_http(
                    scope["method"], route_template(scope), status, time.perf_counter() - started
                )
            if access_log.isEnabledFor(logging.INFO):
                state = scope.get("state") or {}
                extra = {
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "user_id": state.get("user_id"),
                    "client": (scope.get("client") or ("", 0))[0],
                }
                if "route" in state:  # which MCP path served it (fast path: "direct")
                    extra["route"] = state["route"]
                access_log.info("request", extra=extra)
            reset_request_id(token)
            REQUEST_SCOPE.reset(scope_token)
            if trace_token is not None:
                REQUEST_TRACE.reset(trace_token)


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Send, path: str = "") -> None:
        message = f"request body exceeds {self.max_bytes} bytes"
        if path == "/mcp" or path.startswith("/mcp/"):
            # MCP clients expect a JSON-RPC error object, whatever the HTTP status.
            await send_jsonrpc_error(send, 413, INVALID_REQUEST, message)
        else:
            await send_error(send, 413, "payload_too_large", message)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    await send_error(send, 400, "bad_request", "invalid Content-Length")
                    return
                if announced > self.max_bytes:
                    await self._reject(send, scope.get("path", ""))
                    return
                break

        received = 0
        too_large = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if too_large:
                # The app caught our signal and answered on its own (FastAPI says 400
                # "error parsing the body"); the client deserves the real reason.
                if message["type"] == "http.response.start" and not response_started:
                    response_started = True
                    await self._reject(send, scope.get("path", ""))
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await self._reject(send, scope.get("path", ""))
        except Exception:
            # An app that wrapped our signal in its own error still gets a clean 413.
            if too_large and not response_started:
                await self._reject(send, scope.get("path", ""))
            else:
                raise


class _BodyTooLarge(Exception):
    pass
