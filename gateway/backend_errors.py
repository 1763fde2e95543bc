"""The errors a backend connection raises, in core so core modules (the SSRF guard, the
MCP front's error mapping) can use them without importing the runtimes package (which
imports them back). ``gateway.servers.runtimes.base`` re-exports them."""

from __future__ import annotations

from mcp import types


class BackendError(Exception):
    """A backend cannot serve a request; the message is safe to show an agent."""


class BackendUnavailable(BackendError):
    """The backend is not connected and could not be (re)started."""


class BackendNotConnected(BackendUnavailable):
    """The backend could not be connected, so the request was never sent (another
    replica of the server may take it, whatever the tool)."""


class ReplicaFailed(BackendUnavailable):
    """One replica of a replicated server failed during a request, and others are up:
    not a verdict on the server (its breakers leave it to the replica set's ejection)."""


class BackendTimeout(BackendError):
    """The backend did not answer within the call's time limit."""


class BackendRequestError(BackendError):
    """The backend answered a request with a JSON-RPC error; ``error`` keeps its code/data
    so a front can pass it on unchanged."""

    def __init__(self, message: str, error: types.ErrorData) -> None:
        super().__init__(message)
        self.error = error
