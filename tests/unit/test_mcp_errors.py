"""The one mapping of failures to JSON-RPC errors (gateway/mcp/errors.py)."""

from __future__ import annotations

import pytest
from mcp import types
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST

from gateway.backend_errors import BackendError, BackendRequestError
from gateway.errors import Conflict, Forbidden, InvalidInput, NotFound
from gateway.mcp.errors import to_mcp_error

RESOURCE_NOT_FOUND = -32002


@pytest.mark.parametrize(
    ("exc", "code", "expected"),
    [
        # A backend's own answer goes on as it was sent (code, message and data).
        (
            BackendRequestError("x", types.ErrorData(code=-32000, message="no", data={"k": 1})),
            INVALID_PARAMS,
            (-32000, "no", {"k": 1}),
        ),
        # A backend that failed carries no code: the caller's says what it means.
        (
            BackendError("server 'a' timed out"),
            RESOURCE_NOT_FOUND,
            (-32002, "server 'a' timed out", None),
        ),
        (BackendError("down"), INTERNAL_ERROR, (INTERNAL_ERROR, "down", None)),
        # The gateway's own errors keep their stable code in data.
        (
            NotFound("no skill", code="skill_not_found"),
            INTERNAL_ERROR,
            (INVALID_PARAMS, "no skill", {"code": "skill_not_found"}),
        ),
        (
            InvalidInput("bad"),
            INTERNAL_ERROR,
            (INVALID_PARAMS, "bad", {"code": "validation_error"}),
        ),
        (Forbidden("no"), INTERNAL_ERROR, (INVALID_REQUEST, "no", {"code": "forbidden"})),
        (Conflict("busy"), INVALID_PARAMS, (INVALID_PARAMS, "busy", {"code": "conflict"})),
    ],
)
def test_mapping(exc: BaseException, code: int, expected: tuple[int, str, object]) -> None:
    error = to_mcp_error(exc, code)
    assert (error.error.code, error.error.message, error.error.data) == expected


def test_an_mcp_error_is_passed_as_it_is() -> None:
    original = MCPError(INVALID_PARAMS, "invalid cursor")
    assert to_mcp_error(original) is original
