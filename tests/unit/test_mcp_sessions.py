"""The session registry's rules, without a gateway (the integration tests run them for real)."""

from __future__ import annotations

from gateway.auth.principal import Principal
from gateway.mcp.sessions import CANONICAL_SSE_SESSION, SessionRegistry


def _principal(
    key: str | None = "k1", user: str = "u1", scopes: tuple[str, ...] = ("*",)
) -> Principal:
    return Principal(user, "a@b.c", "A", "developer", key, scopes)


def test_a_session_belongs_to_the_key_and_its_scopes() -> None:
    sessions = SessionRegistry(10)
    sessions.opened("s1", _principal(), reserved=False)
    assert sessions.owns("s1", _principal())
    assert not sessions.owns("s1", _principal(key="k2"))  # same user, another key
    assert not sessions.owns("s1", _principal(scopes=("tools:read",)))  # the key changed
    assert not sessions.owns("s2", _principal())  # unknown: nobody's
    assert not sessions.owns("S1", _principal())  # ids are compared exactly


def test_the_cap_counts_reservations_and_open_sessions_and_frees_on_close() -> None:
    sessions = SessionRegistry(2)
    me, other = _principal(), _principal(key="k2")
    assert sessions.reserve(me) and sessions.reserve(me)
    assert not sessions.reserve(me) and sessions.held(me) == 2
    assert sessions.reserve(other)  # per key
    sessions.opened("a", me, reserved=True)
    sessions.unreserve(me)  # the second never opened
    assert sessions.held(me) == 1
    sessions.opened("b", me, reserved=False)  # opened without a reservation: counted too
    assert sessions.held(me) == 2 and not sessions.reserve(me)
    sessions.closed("a")
    sessions.closed("a")  # ends are reported more than once: counted once
    assert sessions.held(me) == 1 and len(sessions) == 1
    sessions.closed("b")
    assert sessions.held(me) == 0 and len(sessions) == 0


def test_a_request_id_is_claimed_once_per_session_as_the_sdk_keys_it() -> None:
    sessions = SessionRegistry(10)
    assert sessions.claim("s", 1)
    assert not sessions.claim("s", 1) and not sessions.claim("s", "1")
    assert sessions.claim("t", 1)  # another session
    sessions.release("s", 1)
    assert sessions.claim("s", "1")
    sessions.closed("s")  # a session's end drops its ids
    assert sessions.claim("s", "1")


def test_only_the_sdks_own_spelling_of_a_legacy_session_id_is_canonical() -> None:
    hex_id = "0123456789abcdef0123456789abcdef"
    assert CANONICAL_SSE_SESSION.fullmatch(hex_id)
    for other in (hex_id.upper(), "{" + hex_id + "}", "01234567-89ab-cdef-0123-456789abcdef"):
        assert not CANONICAL_SSE_SESSION.fullmatch(other)
