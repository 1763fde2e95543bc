"""Relaying what a backend sends back during a request to the agent that made it.

The front sets :data:`CURRENT_RELAY` before calling a backend; the backend
session's callbacks (sampling, elicitation, roots, log messages) look it up. That
works wherever the backend's messages are handled in the caller's context:
in-process (``generated``) servers. A shared stdio/docker/HTTP session reads its
messages on a task of its own, where no relay is set; there :class:`Callers` finds
the agent instead: while exactly one request is in flight on the session, whatever
the backend asks can only be about it. With several in flight, stdio carries
nothing that tells them apart, so the request is refused with a clear error
(per-caller backend sessions would lift that). The same holds for what a Streamable
HTTP backend asks on its session's own GET stream, tied to no request (the Python
SDK's `ctx.session.list_roots()`, server-everything's roots sync): fast-path calls
(gateway/servers/mcp/fastcall.py), which bypass the SDK session, count as callers too
(:meth:`Callers.add`: a dict insert and delete per call). Progress needs none of
this: it is matched to its request by token, and its callback is bound to the
caller's relay.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from mcp import types
from mcp_types.jsonrpc import METHOD_NOT_FOUND

NO_CLIENT = METHOD_NOT_FOUND  # nobody on this path can answer the request


class InputRound(Protocol):
    """A 2026-07-28 agent's retry of a multi-round request: what it answered, passed on."""

    @property
    def input_responses(self) -> Any:
        """The agent's `inputResponses`."""

    @property
    def request_state(self) -> Any:
        """The `requestState` it returns."""

    @property
    def meta(self) -> Any:
        """Its own per-request envelope (its capabilities: a `_meta` dict), if any."""


class Relay(Protocol):
    """The agent-side peer a backend request is forwarded to."""

    @property
    def modern(self) -> bool:
        """The agent speaks 2026-07-28 (no session to be asked on mid-call)."""

    @property
    def wants_progress(self) -> bool:
        """It asked for progress (a progress token in its request's _meta)."""

    @property
    def long_running(self) -> bool:
        """The call runs as a job (an agent's MCP task, an async REST call): a tool the
        backend may run as its own task does (backend_tasks.py)."""

    @property
    def input_round(self) -> InputRound | None:
        """Its multi-round state, when a backend's input_required results pass to it."""

    async def request(self, method: str, params: Any) -> Any:
        """Send a server-to-client request (sampling, elicitation, roots); its typed result."""

    @property
    def askable(self) -> bool:
        """False while the request waits for its agent's answer to an earlier question
        (a 2026-07-28 call parked for its retry): a new question is another's."""

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        """Forward a log message notification."""

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        """Forward progress of the request being served."""


class Asker(Protocol):
    """A fast-path call in flight (gateway/servers/mcp/fastcall.py): it can be asked what the
    backend asks outside any request; logs and progress reach it on its own stream."""

    async def ask_outside(self, method: str, params: Any) -> Any:
        """Forward a server-to-client request to the call's agent; its typed result."""

    @property
    def askable(self) -> bool:
        """False while the call waits for its agent's retry (see :class:`Relay`)."""


CURRENT_RELAY: ContextVar[Relay | None] = ContextVar("mcpgw_relay", default=None)


def no_relay(what: str) -> types.ErrorData:
    return types.ErrorData(
        code=NO_CLIENT,
        message=f"{what} is not available: no client connection to relay it to",
    )


class Callers:
    """The agents with a request in flight on one shared backend session."""

    def __init__(self) -> None:
        self._relays: dict[int, Relay] = {}  # SDK-path requests, by serial number
        self._calls: dict[Asker, Asker] = {}  # fast calls (a dict: insert and delete are cheap)
        self._ids = itertools.count()

    def add(self, call: Asker) -> None:
        """Count a fast call in flight until :meth:`discard` (per call: a dict insert)."""
        self._calls[call] = call

    def discard(self, call: Asker) -> None:
        """Stop counting a fast call added with :meth:`add`."""
        self._calls.pop(call, None)

    @contextmanager
    def serving(self, relay: Any) -> Iterator[None]:
        """Count ``relay`` (the caller's, if any) in flight for the duration."""
        if not callable(getattr(relay, "request", None)):
            yield  # no agent behind this request (catalog refresh, subscription marker)
            return
        key = next(self._ids)
        self._relays[key] = relay
        try:
            yield
        finally:
            del self._relays[key]

    def find(self) -> Relay | None:
        """The relay of the request being served here, else of the one SDK-path request in
        flight (what logs go to: a fast call gets its logs on its own stream)."""
        relay = CURRENT_RELAY.get()
        if relay is not None and callable(getattr(relay, "request", None)):
            return relay
        if len(self._relays) == 1:
            return next(iter(self._relays.values()))
        return None

    def _missing(self, what: str, in_flight: int) -> types.ErrorData:
        if in_flight > 1:
            return types.ErrorData(
                code=NO_CLIENT,
                message=f"{what} is not available: {in_flight} requests are in flight "
                "on this server's shared session, so the one asking cannot be told apart",
            )
        return no_relay(what)

    async def _forward(self, what: str, method: str, params: Any) -> Any:
        relay = CURRENT_RELAY.get()
        if relay is not None and callable(getattr(relay, "request", None)):
            return await relay.request(method, params)
        # Asked outside any request: only the one request in flight, of either path, can
        # be the one it is about. A call parked for its agent's retry already asked its
        # agent and waits on the backend's question: the other call is the one asking.
        in_flight = len(self._relays) + len(self._calls)
        relays = [relay for relay in self._relays.values() if relay.askable]
        calls = [call for call in self._calls.values() if call.askable]
        if len(relays) + len(calls) == 1:
            if relays:
                return await relays[0].request(method, params)
            return await calls[0].ask_outside(method, params)
        if in_flight == 1:  # the parked call itself asks again: for its agent's retry
            for only in self._relays.values():
                return await only.request(method, params)
            return await next(iter(self._calls.values())).ask_outside(method, params)
        return self._missing(what, len(relays) + len(calls) or in_flight)

    async def sampling(
        self, context: Any, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.ErrorData:
        result: types.CreateMessageResult | types.ErrorData = await self._forward(
            "sampling", "sampling/createMessage", params
        )
        return result

    async def elicitation(
        self, context: Any, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        result: types.ElicitResult | types.ErrorData = await self._forward(
            "elicitation", "elicitation/create", params
        )
        return result

    async def roots(self, context: Any) -> types.ListRootsResult | types.ErrorData:
        result: types.ListRootsResult | types.ErrorData = await self._forward(
            "roots", "roots/list", None
        )
        return result

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        relay = self.find()
        if relay is not None:
            await relay.log(params)
