"""One fast `tools/call`: the agent's request out to the backend, its messages back.

Split from :mod:`gateway.servers.mcp.fastpath` (which decides eligibility and routes): a
:class:`FastCall` runs the exchange with its deadline and disconnect watch, relays
what the backend sends before its answer, and words failures as the SDK path does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from mcp.server.streamable_http import REQUEST_CANCELLED
from mcp.shared.inbound import ERROR_CODE_HTTP_STATUS
from starlette.types import Receive, Scope, Send

from gateway.asgi_headers import header_map
from gateway.asgi_replies import send_json
from gateway.mcp.fastlist import SERVER_INFO_META_KEY
from gateway.mcp.results import tool_error_body
from gateway.observability.tracing import TRACE_STATE_KEY
from gateway.servers.cache.store import Entry
from gateway.servers.calls import CallTarget
from gateway.servers.controls import WARNINGS_META
from gateway.servers.mcp.fastrelay import ask_agent, hand_over
from gateway.servers.mcp.input_bridge import BRIDGED_METHODS, Event, PendingCall
from gateway.servers.pipeline import TraceOrigin
from gateway.servers.resilience.retry import backoff
from gateway.servers.runtimes.direct import DirectRoute, next_id
from gateway.servers.runtimes.direct_stream import backend_messages
from gateway.servers.runtimes.http_channel import ChannelError

if TYPE_CHECKING:
    from gateway.servers.mcp.fastpath import FastPath, FastRequest

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
_WATCH_DISCONNECT_AFTER = 0.05  # seconds
# A JSON-RPC response around a result's JSON: head, the id, this, the result, "}".
_REPLY_HEAD = b'{"jsonrpc":"2.0","id":'
_REPLY_RESULT = b',"result":'


class FastCall:
    """One fast `tools/call`: backend response in, agent response out.

    Also an :class:`~gateway.servers.runtimes.relay.Asker` while it is in flight: what the
    backend asks outside the call goes to its agent (fastrelay.py)."""

    # A class default, so a call nothing is asked outside of never sets it (fastrelay.py).
    asking: list[asyncio.Future[dict[str, Any]]] | None = None  # questions awaiting answers
    # A 2026 agent asked outside the call was answered `input_required` early: what the
    # backend sends from then on goes to this pending call, which the agent's retry follows.
    parked: PendingCall | None = None
    # Why the call was stopped (see stop()); class defaults, set only when it happens.
    stopped_by: str | None = None
    # How the call ended, for the record stage (class defaults: set when answered).
    outcome: str = "error"
    failure: str | None = None  # the error the agent was told, if any
    sent: int | None = None  # bytes of the answer
    _task: asyncio.Task[Any] | None = None  # the task running the call, while it runs
    fault: str | None = None  # how the backend failed, for the breakers ("server", "call")
    retrying: bool = False  # a failure now is retried (exchange_retrying), not answered
    reroutable: bool = False  # a replica set's: a retry goes another replica's way
    warnings: list[str] | None = None  # the limit stage's, for the result's _meta
    # The response cache wants the backend's result (``kept``: a copy, as it came).
    keep: bool = False
    kept: dict[str, Any] | None = None

    def __init__(
        self,
        fast: FastPath,
        route: DirectRoute,
        request: FastRequest,
        backend_id: str,
        scope: Scope,
        send: Send,
        owner: tuple[str, str | None],
        target: CallTarget,
    ) -> None:
        self.fast = fast
        self.target = target  # what the agent called (kept by a call it parks)
        self.scope = scope
        self.route = route
        self.request = request
        self.backend_id = backend_id
        self.send = send
        self.owner = owner
        self.streaming = False
        self.asked: dict[str, Any] | None = None  # a backend request to bridge
        # Says which path served the call (operators, tests); costs nothing.
        self.extra_headers: list[tuple[bytes, bytes]] = [(b"mcpgw-route", b"direct")]
        if request.session_id is not None:
            self.extra_headers.append((b"mcp-session-id", request.session_id.encode("latin-1")))

    def trace_origin(self) -> TraceOrigin:
        """The request's trace fields, for the call's span (read only when traced)."""
        version = header_map(self.scope).get(b"mcp-protocol-version")  # made per request
        request = self.request
        return TraceOrigin(
            request.params.get("_meta"),
            (self.scope.get("state") or {}).get(TRACE_STATE_KEY),
            request.session_id,
            request.id,
            None if version is None else version.decode("latin-1"),
        )

    async def run(
        self, work: Callable[[], Awaitable[bool | None]], timeout: float, receive: Receive
    ) -> bool | None:
        """True/False: answered (tool succeeded / failed); None: not sent, take the SDK path."""
        # One timer does both jobs, set up per call without a task: after a moment it
        # starts watching for the agent going away (2026-07-28's cancel signal; watching
        # needs a task, which costs more than a fast call does, and a disconnect that
        # came earlier is seen at once: the server remembers it); at the deadline it
        # times the call out.
        # Stopping cancels the task, which closes the backend connection carrying the
        # call (http_channel: an exchange left by an exception is closed, never pooled):
        # JSON-mode and stateless backends notice a cancel only that way.
        loop = asyncio.get_running_loop()
        task = self._task = asyncio.current_task()
        assert task is not None
        deadline = loop.time() + timeout
        watcher: asyncio.Future[None] | None = None
        timer: asyncio.TimerHandle
        stop = self.stop

        def on_disconnect(future: asyncio.Future[None]) -> None:
            # Parked: the agent's response is complete (input_required), not abandoned.
            if not future.cancelled() and self.parked is None:
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
            return await work()
        except asyncio.CancelledError:
            stopped_by = self.stopped_by
            if stopped_by is None or task.uncancel() > 0:
                raise  # cancelled from outside (shutdown), not by us
            if not self.route.modern and stopped_by != "cancelled":
                # A 2026 backend sees the connection close; a 2025 one with a session
                # needs telling too (the agent's own notification was forwarded already).
                reason = "the client went away" if stopped_by == "agent" else "timed out"
                cancel = {"requestId": self.backend_id, "reason": f"{reason} at the gateway"}
                await self.fast._post_quietly(
                    self.route,
                    {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel},
                    "notifications/cancelled",
                )
            if stopped_by != "timeout":
                self.outcome = "cancelled"
            if stopped_by == "agent":
                return False
            if stopped_by == "cancelled":
                # The agent's POST is still open: end it as the SDK path does (2025-11-25).
                error = {"code": REQUEST_CANCELLED, "message": "Request cancelled"}
                await self._answer({"jsonrpc": "2.0", "id": self.backend_id, "error": error})
                return False
            await self._finish_error(
                f"tool call on server {self.route.server!r} timed out after {timeout:g}s",
                "call",
            )
            self.outcome = "timeout"
            return False
        except ChannelError as exc:
            if not exc.sent:
                self.fault = "server"  # for a replica set: that replica is out
                return None
            return await self._finish_error(
                f"server {self.route.server!r} failed during the call: {exc}", "server"
            )
        finally:
            self._task = None
            timer.cancel()
            if watcher is not None:
                watcher.remove_done_callback(on_disconnect)
                watcher.cancel()

    def stop(self, reason: str) -> None:
        """Stop the call while it runs: ``reason`` is "agent" (it went away), "cancelled"
        (it sent notifications/cancelled) or "timeout". Once only; a no-op when done."""
        task = self._task
        if task is not None and self.stopped_by is None:
            self.stopped_by = reason
            task.cancel()

    async def exchange(self, payload: bytes, headers: dict[str, str] | bytes) -> bool | None:
        """POST the call and relay the backend's answer (the first round of a call)."""
        route = self.route
        # One stack holds the request and its stream: both go to a pending call if the
        # backend asks a sessionless agent something (see _park).
        async with AsyncExitStack() as stack:
            response = await stack.enter_async_context(route.channel.post(payload, headers))
            if response.status == 404 and not route.modern and route.target.session_id:
                await response.read()
                route.target.expired = True
                return None  # the backend forgot the session; the SDK path starts a new one
            kind = response.content_type
            if kind == b"application/json":
                body = route.secrets.json(await response.read())
                return await self._message(body, final_only=True)
            if kind == b"text/event-stream" and response.status == 200:
                messages = await stack.enter_async_context(
                    aclosing(backend_messages(route, response))
                )
                async for data in messages:
                    finished = await self._message(route.secrets.json(data), final_only=False)
                    if finished is not None:
                        return finished
                    if self.asked is not None:  # a question for a sessionless agent
                        return await self._park(messages, stack)
                return await self._finish_error(
                    f"server {route.server!r} closed the stream without answering", "server"
                )
            await response.read()
            return await self._finish_error(
                f"server {route.server!r} answered HTTP {response.status}", "server"
            )

    async def exchange_retrying(
        self, payload: Callable[[str], bytes], headers: dict[str, str] | bytes, plan: Retrying
    ) -> bool | None:
        """:meth:`exchange`, repeated while the backend fails to answer and ``plan``
        allows (a retry-safe tool: resilience/retry.py), each attempt with an id of its
        own; the last failure is answered as usual."""
        loop = asyncio.get_running_loop()
        policy, attempt = plan.tool.retry, 1
        try:
            while True:
                self.retrying, self.fault = attempt < policy.attempts, None
                try:
                    return await self.exchange(payload(self.backend_id), headers)
                except (_Failed, ChannelError) as exc:
                    failed = isinstance(exc, _Failed)
                    if not failed and (not exc.sent or not self.retrying):  # type: ignore[union-attr]
                        raise  # not sent: the SDK path makes the call
                    if self.reroutable and not self.streaming:
                        # A replicated server: the SDK path repeats it on another replica
                        # (this one is out: fastpath.py reports it); safe, as retrying is.
                        self.fault = "server"
                        raise ChannelError(str(exc), sent=False) from None
                    delay = backoff(policy, attempt)
                    if loop.time() + delay >= plan.latest:
                        self.retrying = False
                        if failed:
                            return await self._finish_error(str(exc), self.fault)
                        raise
                plan.tool.server.retries += 1
                attempt += 1
                self.backend_id = next_id()
                await asyncio.sleep(delay)
        finally:
            self.retrying = False

    async def _message(self, data: bytes, *, final_only: bool) -> bool | None:
        """Handle one backend message; returns the call's outcome once it is answered."""
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            # Bytes that are not UTF-8 are read as U+FFFD, as the SDK client reads them.
            try:
                message = orjson.loads(data.decode("utf-8", errors="replace"))
            except orjson.JSONDecodeError:
                return await self._finish_error(
                    f"server {self.route.server!r} sent invalid JSON", "call"
                )
            data = orjson.dumps(message)
        if not isinstance(message, dict):
            return await self._finish_error(f"server {self.route.server!r} sent a batch", "call")
        if message.get("id") == self.backend_id and "method" not in message:
            return await self._answer(message)
        if final_only:
            return await self._finish_error(
                f"server {self.route.server!r} answered another request", "call"
            )
        if "method" in message and "id" in message:
            self.keep = False  # the answer will depend on what the agent says
            if self.request.modern and message["method"] in BRIDGED_METHODS:
                if self.parked is not None:  # for the retry following the parked call
                    self.parked.events.put_nowait(Event("ask", message))
                    return None
                self.asked = message  # asked of the agent as input_required (input_bridge.py)
                return None
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

    # --- Asker (runtimes/relay.py): what the backend asks on its session's own stream -------
    async def ask_outside(self, method: str, params: Any) -> Any:
        """Ask this call's agent a request the backend made outside the call."""
        return await ask_agent(self, method, params)

    @property
    def askable(self) -> bool:
        """Not parked waiting for its agent's retry (see :class:`Asker`)."""
        return self.parked is None or not self.parked.awaiting_agent

    # --- questions for a 2026-07-28 agent (input_bridge.py) ---------------------------------
    async def _park(self, messages: AsyncIterator[bytes], stack: AsyncExitStack) -> bool:
        """Hand the call's stream to a pending call and answer the agent's first round."""
        assert self.asked is not None
        call = PendingCall(
            self.owner, self.route.server, self.route, self.backend_id, target=self.target
        )
        self.fast.bridge.start(call, messages, stack.pop_all(), self.asked)
        return await self.follow(call)

    async def follow(self, call: PendingCall) -> bool:
        """Answer the agent from the pending call's events: its notifications, then the
        call's result, or the next questions (`input_required`, parked again)."""
        try:
            while True:
                event = await call.events.get()
                if event.kind == "note":
                    await self._stream(event.data)
                elif event.kind == "final" and event.message is not None:
                    return await self._answer(event.message)
                elif event.kind == "broken":
                    text = event.data.decode()
                    server = self.route.server
                    return await self._finish_error(f"server {server!r} {text}", "server")
                elif event.message is not None:  # a question: one per round
                    timeout = self.fast.servers.timeout_for(self.target)
                    result = self.fast.bridge.park(call, [event.message], timeout)
                    await self._answer({"jsonrpc": "2.0", "id": self.backend_id, "result": result})
                    return True
        except asyncio.CancelledError:
            if call.pump is not None:  # the agent went away or time ran out: stop reading
                call.pump.cancel()
            raise

    async def _answer(self, message: dict[str, Any]) -> bool:
        if self.parked is not None:  # the agent was answered early (fastrelay.py)
            return hand_over(self.parked, message)
        message["id"] = self.request.id
        result = message.get("result")
        ok = "error" not in message
        if isinstance(result, dict):
            transform = self.target.transform
            if transform is not None and transform.results is not None and "content" in result:
                transform.results.apply(result)  # the server's result transforms
            if self.keep:
                # Transformed, before it is stamped (what follows replaces keys).
                self.kept = dict(result)
            if self.warnings:  # a budget nearly spent (the limit stage's, controls.py)
                meta = result.get("_meta")
                kept = meta if isinstance(meta, dict) else {}
                result["_meta"] = {**kept, WARNINGS_META: self.warnings}
            if self.request.modern:
                # Required in 2026-07-28; older backends (and some newer) leave it out.
                result.setdefault("resultType", "complete")
                _stamp(result, self.fast.server_info)
            ok = not result.get("isError", False)
            self.outcome = "ok" if ok else "tool_error"
        elif not ok:
            error = message.get("error")
            self.failure = str(error.get("message")) if isinstance(error, dict) else None
        body = orjson.dumps(message)
        self.sent = len(body)
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

    async def answer_with(self, result: Any) -> None:
        """Answer with a result a pipeline stage gave in the backend's place: from the
        response cache, its stored JSON spliced in (see :meth:`_spliced`), unless a
        budget's warning is to be added, as to a backend's answer."""
        if type(result) is Entry:
            if not self.warnings and self.parked is None:
                message = self._spliced(result)
                self.outcome, self.sent = "ok", len(message)
                await send_json(self.send, message, 200, self.extra_headers)
                return
            result = result.result
        elif hasattr(result, "model_dump"):
            result = result.model_dump(by_alias=True, exclude_none=True, mode="json")
        await self._answer({"jsonrpc": "2.0", "id": self.backend_id, "result": dict(result)})

    def _spliced(self, entry: Entry) -> bytes:
        """The response to a cache hit: the stored result's JSON (a 2026-07-28 agent's
        stamped once per entry) with the agent's id, nothing serialised but the id, and
        the result's bytes copied once."""
        body = entry.body
        if self.request.modern:
            if entry.modern is None:
                result = {**entry.result, "resultType": "complete"}
                _stamp(result, self.fast.server_info)
                entry.modern = orjson.dumps(result)
            body = entry.modern
        return b"".join((_REPLY_HEAD, orjson.dumps(self.request.id), _REPLY_RESULT, body, b"}"))

    async def reject(self, code: int, message: str, data: dict[str, Any]) -> None:
        """Answer with a JSON-RPC error before anything was sent (a limit refused it)."""
        error = {"code": code, "message": message, "data": data}
        await self._answer({"jsonrpc": "2.0", "id": self.backend_id, "error": error})

    async def refuse(self, text: str) -> None:
        """Answer that the call was refused (by a pipeline stage) before it was sent."""
        await self._finish_error(text)

    async def _finish_error(self, text: str, fault: str | None = None) -> bool:
        """The call failed at the backend: a tool error result, as on the SDK path.
        ``fault`` says how, for the breakers (pipeline.py's ``Call.fault``); while a
        retry is allowed (and the agent has been sent nothing yet) it is raised instead."""
        if fault is not None:
            self.fault = fault
            if self.retrying and not self.streaming:
                raise _Failed(text)
        result = tool_error_body(text)
        if self.request.modern:
            result["resultType"] = "complete"
        await self._answer({"jsonrpc": "2.0", "id": self.backend_id, "result": result})
        self.outcome, self.failure = "error", text
        return False

    async def _json(self, body: bytes, status: int = 200) -> None:
        await send_json(self.send, body, status, self.extra_headers)

    async def _stream(self, data: bytes) -> None:
        if self.parked is not None:  # the agent was answered early (fastrelay.py)
            self.parked.events.put_nowait(Event("note", data=data))
            return
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


class _Failed(Exception):
    """An attempt failed and may be retried (its text: what the agent would be told)."""


@dataclass(slots=True)
class Retrying:
    """A fast call's retry plan: the tool's state (its policy, its server's retry count)
    and the latest loop time a retry may start."""

    tool: Any
    latest: float


def _stamp(result: dict[str, Any], server_info: dict[str, Any] | None) -> None:
    """The gateway's `serverInfo` on a 2026-07-28 result, where the backend put none: the
    rule the SDK path's server applies to every result it sends (spec #3002)."""
    if server_info is None:
        return
    meta = result.get("_meta")
    if meta is None:
        result["_meta"] = {SERVER_INFO_META_KEY: server_info}
    elif isinstance(meta, dict) and meta.get(SERVER_INFO_META_KEY) is None:
        result["_meta"] = {**meta, SERVER_INFO_META_KEY: server_info}


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
