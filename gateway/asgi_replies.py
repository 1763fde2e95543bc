"""The one way a raw ASGI path answers with JSON: the gateway's `{code, message}` error,
a JSON-RPC error object, or any JSON body.

FastAPI routes answer through their exception handlers (gateway/errors.py); these are
for what runs below or beside them: middleware (body limits, crashes), the MCP front
and its fast path, the endpoint while the app starts or stops.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from starlette.types import Send

Headers = Iterable[tuple[bytes, bytes]]


async def send_json(send: Send, payload: Any, status: int = 200, headers: Headers = ()) -> None:
    """``payload`` (JSON-serialisable, or bytes already encoded) as a whole response."""
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send, status: int, code: str, message: str, headers: Headers = (), **extra: Any
) -> None:
    """The gateway's JSON error: a stable ``code`` and a human ``message`` (and ``extra``
    fields, such as the request id of an unexpected error)."""
    await send_json(send, {"code": code, "message": message, **extra}, status, headers)


async def send_jsonrpc_error(
    send: Send,
    status: int,
    code: int,
    message: str,
    request_id: Any = None,
    reason: str | None = None,
) -> None:
    """A JSON-RPC error object (for ``request_id``, else ``null``) with HTTP ``status``;
    ``reason`` is the gateway's stable code, in ``error.data.code``."""
    error: dict[str, Any] = {"code": code, "message": message}
    if reason is not None:
        error["data"] = {"code": reason}
    await send_json(send, {"jsonrpc": "2.0", "id": request_id, "error": error}, status)
