"""Agent sessions on `/mcp` (2025-11-25) and `/sse` (legacy): who owns each, how many
each key holds, and which request ids are in flight in each.

One registry serves both transports and both `/mcp` paths (the SDK path and the
fast path), so there is one ownership rule in one place (:meth:`SessionRegistry.owns`):
a session belongs to the API key that opened it, with the scopes it had then.
Another key — even of the same user — gets 404 for it, as if it did not exist.

Sessions live in this process's memory (as the SDK's do); an entry is dropped the
moment its session ends (DELETE, idle expiry, a crash, an SSE disconnect), which
also frees its key's slot under ``MCPGW_MCP_MAX_SESSIONS_PER_KEY``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from gateway.auth.principal import Principal

log = logging.getLogger("gateway.mcp")

# The only form of a legacy SSE session id the gateway accepts: what the SDK puts in
# its endpoint event (`uuid4().hex`). The SDK itself parses any `UUID(hex=...)`
# spelling (upper case, braces, `urn:uuid:`), so a looser check here would let two
# spellings of one session pass two different checks.
CANONICAL_SSE_SESSION = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class SessionOwner:
    """Who opened a session: the key (its id and scopes) and the key's user."""

    user_id: str
    key_id: str | None
    scopes: tuple[str, ...]

    @classmethod
    def of(cls, principal: Principal) -> SessionOwner:
        """The owner a request by ``principal`` would be."""
        return cls(principal.user_id, principal.key_id, principal.scopes)

    @property
    def slot(self) -> str:
        """What the per-key session cap counts under (the user, for a keyless token)."""
        return self.key_id or f"user:{self.user_id}"


class SessionRegistry:
    """Owners, per-key counts and in-flight request ids of this process's agent sessions."""

    def __init__(self, max_per_key: int) -> None:
        self.max_per_key = max_per_key
        self._owners: dict[str, SessionOwner] = {}
        self._held: dict[str, int] = {}  # slot → open sessions + reservations
        self._in_flight: dict[str, set[str]] = {}  # session → request ids being served
        # session → the agent's (name, version) from its initialize, for the audit trail
        self._clients: dict[str, tuple[str | None, str | None]] = {}

    # --- ownership ----------------------------------------------------------------------
    def owns(self, session_id: str, principal: Principal) -> bool:
        """May ``principal`` use this session? Only if it is open and its key opened it.

        The id is compared exactly: the SDK looks Streamable HTTP sessions up by the
        exact string, and legacy SSE ids are checked for their canonical form first.
        """
        owner = self._owners.get(session_id)
        # Field by field rather than building an owner: this runs on every request.
        return (
            owner is not None
            and owner.key_id == principal.key_id
            and owner.user_id == principal.user_id
            and owner.scopes == principal.scopes
        )

    def client(self, session_id: str) -> tuple[str | None, str | None] | None:
        """The (name, version) the session's agent gave when it initialized."""
        return self._clients.get(session_id)

    def is_open(self, session_id: str) -> bool:
        """Is this session open (whoever owns it)?"""
        return session_id in self._owners

    # --- the per-key cap ----------------------------------------------------------------
    def held(self, principal: Principal) -> int:
        """How many sessions ``principal``'s key holds (open or being opened)."""
        return self._held.get(SessionOwner.of(principal).slot, 0)

    def reserve(self, principal: Principal) -> bool:
        """Take a slot for a session about to open; False when the key is at its cap.

        Taken before the session exists, so concurrent opens cannot overshoot the cap;
        :meth:`opened` turns it into the session's slot, :meth:`unreserve` gives it back.
        """
        slot = SessionOwner.of(principal).slot
        held = self._held.get(slot, 0)
        if held >= self.max_per_key:
            return False
        self._held[slot] = held + 1
        return True

    def unreserve(self, principal: Principal) -> None:
        """Give back a reservation whose session never opened."""
        self._release_slot(SessionOwner.of(principal).slot)

    def opened(
        self,
        session_id: str,
        principal: Principal,
        *,
        reserved: bool,
        client: tuple[str | None, str | None] | None = None,
    ) -> None:
        """Record a session that just opened (``reserved``: its slot was taken already;
        ``client``: the agent's name and version, as its initialize said)."""
        owner = SessionOwner.of(principal)
        if client is not None:
            self._clients[session_id] = client
        previous = self._owners.get(session_id)
        if previous is not None:  # ids are random; a repeat means it was counted once
            self._release_slot(previous.slot)
        self._owners[session_id] = owner
        if not reserved:
            self._held[owner.slot] = self._held.get(owner.slot, 0) + 1

    def closed(self, session_id: str) -> None:
        """Forget a session that ended, freeing its key's slot (idempotent)."""
        owner = self._owners.pop(session_id, None)
        self._in_flight.pop(session_id, None)
        self._clients.pop(session_id, None)
        if owner is not None:
            self._release_slot(owner.slot)

    def _release_slot(self, slot: str) -> None:
        held = self._held.get(slot, 0) - 1
        if held > 0:
            self._held[slot] = held
        else:
            self._held.pop(slot, None)

    # --- request ids --------------------------------------------------------------------
    def claim(self, session_id: str, request_id: Any) -> bool:
        """Mark a request id in flight in a session; False if it already is.

        Ids are compared as the SDK keys them (``str(id)``: `1` and `"1"` are one):
        a second request with an id in flight would take over the first's response
        stream, so the first would never be answered.
        """
        key = str(request_id)
        ids = self._in_flight.get(session_id)
        if ids is None:
            self._in_flight[session_id] = {key}
            return True
        if key in ids:
            return False
        ids.add(key)
        return True

    def release(self, session_id: str, request_id: Any) -> None:
        """The request was answered (or abandoned): its id may be used again."""
        ids = self._in_flight.get(session_id)
        if ids is not None:
            ids.discard(str(request_id))
            if not ids:
                del self._in_flight[session_id]

    def __len__(self) -> int:
        return len(self._owners)


class TrackedSessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager, telling the gateway when a session ends.

    The SDK has no public hook for it; every end (DELETE, idle timeout, a crash, an
    opening request that failed, shutdown) goes through ``_discard_session``.
    """

    def __init__(self, *args: Any, on_discard: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_discard = on_discard

    async def _discard_session(
        self, session_id: str, transport: StreamableHTTPServerTransport
    ) -> None:
        # Before any await, as the SDK forgets it: the id answers 404 at once.
        try:
            self._on_discard(session_id)
        except Exception:  # never let bookkeeping stop the SDK's cleanup
            log.exception("session end bookkeeping failed")
        await super()._discard_session(session_id, transport)
