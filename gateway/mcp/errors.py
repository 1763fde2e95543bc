"""The one mapping of a failure to the JSON-RPC error an agent is sent.

Codes come from ``mcp_types.jsonrpc``. A backend's own JSON-RPC error is passed on
intact (code, message, data); the gateway's errors (``AppError``) keep their stable
``code`` in ``data.code`` (a limited call: code -32029 with ``data.retryAfter``,
``limit``, ``scope``); anything else is ``code`` (what the caller says the failure
means: -32602 for a bad name, -32002 for a resource not found) with its message.
"""

from __future__ import annotations

from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST

from gateway.backend_errors import BackendRequestError
from gateway.errors import AppError, Forbidden, InvalidInput, NotFound, Unauthenticated
from gateway.policy.limits import JSONRPC_CODE, LimitExceeded

# The gateway's errors, by what they say of the request.
_APP_CODES: tuple[tuple[type[AppError], int], ...] = (
    (InvalidInput, INVALID_PARAMS),
    (NotFound, INVALID_PARAMS),
    (Forbidden, INVALID_REQUEST),
    (Unauthenticated, INVALID_REQUEST),
)


def to_mcp_error(exc: BaseException, code: int = INTERNAL_ERROR) -> MCPError:
    """``exc`` as the JSON-RPC error for the agent; ``code`` for a failure that carries
    none of its own (a backend that failed, timed out or could not be reached)."""
    if isinstance(exc, MCPError):
        return exc
    if isinstance(exc, BackendRequestError):
        return MCPError(exc.error.code, exc.error.message, exc.error.data)
    if isinstance(exc, LimitExceeded):  # one code in both eras, retry data for programs
        return MCPError(JSONRPC_CODE, exc.message, exc.rpc_data())
    if isinstance(exc, AppError):
        mapped = next((c for kind, c in _APP_CODES if isinstance(exc, kind)), code)
        return MCPError(mapped, exc.message, {"code": exc.code})
    return MCPError(code, str(exc))
