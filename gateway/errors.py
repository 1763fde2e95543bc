"""Error types raised by services and their JSON shape on the wire.

Every HTTP error body is ``{"code": <stable machine code>, "message": <human text>}``
plus optional detail fields (``errors`` for validation, ``request_id`` for 500s).
Services raise :class:`AppError` subclasses; routers never build error bodies.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from gateway.observability.logging import current_request_id

log = logging.getLogger("gateway.errors")


class ErrorBody(BaseModel):
    """The shape of every error response (extra fields depend on the error)."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str


# What each error status means on this API, for the OpenAPI description.
_ERROR_MEANINGS: dict[int, str] = {
    400: "Malformed request: the body is not valid JSON (`invalid_json`) or not parseable",
    401: "Missing or invalid credentials",
    403: "Authenticated but not allowed",
    404: "No such resource, or not yours to see",
    409: "Conflicts with the current state (a name taken, a wrong state, a quota reached)",
    413: "Over a size limit (the request body, an upload, a file)",
    422: "Invalid input; `errors` names each field",
    429: "Too many requests",
    502: "A backend or provider failed; its error is relayed",
    503: "A backend or provider is unavailable",
    504: "A backend or provider did not answer in time",
}
ErrorResponses = dict[int | str, dict[str, Any]]


def error_responses(*extra: int) -> ErrorResponses:
    """OpenAPI ``responses=`` for a route: the common 401/403/422 plus ``extra`` statuses.

    Statuses that follow from a route's shape (400/413 with a body, 404 with a path
    parameter) are added to every ``/api/v1`` operation by
    :func:`document_error_responses`; name here what only the service knows (409,
    502, 503, 504, or 404 for an id carried in the body or query).
    """
    return {
        s: {"model": ErrorBody, "description": _ERROR_MEANINGS[s]} for s in (401, 403, 422, *extra)
    }


ERROR_RESPONSES: ErrorResponses = error_responses()
_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def document_error_responses(schema: dict[str, Any], prefix: str) -> None:
    """Complete the error statuses of every operation under ``prefix`` in an OpenAPI dict.

    Every operation authenticates (401, 403); one with parameters or a body validates
    them (422); one with a body can be over the global body limit (413) and, when the
    gateway parses it (JSON, a form), malformed (400); one with a path parameter can
    name something that does not exist (404).
    Every error response is given the :class:`ErrorBody` schema, replacing FastAPI's
    default validation shape, which the error handlers never send.
    """
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema())
    for path, item in schema.get("paths", {}).items():
        if not path.startswith(prefix):
            continue
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            body_types = operation.get("requestBody", {}).get("content", {})
            has_body = "requestBody" in operation
            # Only a body the gateway parses can be malformed; raw bytes cannot.
            parsed = any(
                "json" in t or t.startswith(("multipart/", "application/x-www")) for t in body_types
            )
            statuses = [401, 403]
            statuses += [422] if has_body or operation.get("parameters") else []
            statuses += [413] if has_body else []
            statuses += [400] if parsed else []
            statuses += [404] if "{" in path else []
            responses = operation.setdefault("responses", {})
            for status in statuses:
                responses.setdefault(str(status), {"description": _ERROR_MEANINGS[status]})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {"application/json": {"schema": dict(_ERROR_REF)}}


class AppError(Exception):
    """A failure with a stable code, an HTTP status and a message safe to show."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}

    def headers(self) -> dict[str, str] | None:
        """Response headers that go with the error (``Retry-After`` on a 429)."""
        return None


class InvalidInput(AppError):
    status_code = 422
    code = "validation_error"


class Unauthenticated(AppError):
    status_code = 401
    code = "unauthenticated"

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value (RFC 6750): plain ``Bearer`` when no credential
        came, else ``invalid_token`` and why (our own words, never the token's)."""
        return self.challenge_with()

    def challenge_with(self, resource_metadata: str | None = None, scope: str = "") -> str:
        """:attr:`challenge`, telling an OAuth client where the resource's metadata is
        (RFC 9728 §5.1) and which scopes to ask for."""
        params = []
        if resource_metadata:
            params.append(f'resource_metadata="{resource_metadata}"')
        if scope:
            params.append(f'scope="{scope}"')
        if self.code != Unauthenticated.code:
            why = self.message.replace("\\", "").replace('"', "'")
            params += ['error="invalid_token"', f'error_description="{why}"']
        return "Bearer " + ", ".join(params) if params else "Bearer"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, **extra}, status, headers=headers)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:] or parts
    return ".".join(parts)


async def _on_app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    if isinstance(exc, Forbidden):
        _audit_denial(request, exc)
    headers = {"WWW-Authenticate": exc.challenge} if isinstance(exc, Unauthenticated) else None
    return JSONResponse(exc.body(), exc.status_code, headers=headers or exc.headers())


def _audit_denial(request: Request, exc: Forbidden) -> None:
    """A refused API request goes in the audit trail: who, what, why."""
    # Imported here: the audit package builds on this module (its errors).
    from gateway.audit.entry import AuditEntry

    audit = getattr(request.app.state, "audit", None)
    if audit is None:
        return
    audit.record(
        AuditEntry(
            action="access.denied",
            outcome="denied",
            principal=getattr(request.state, "principal", None),
            route="rest",
            target=f"{request.method} {request.url.path}",
            error_code=exc.code,
            error=exc.message,
        )
    )


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (detail.get("ctx") or {}).get("error", "malformed JSON")
        return error_response(400, "invalid_json", f"request body is not valid JSON: {reason}")
    items = [
        {"field": _field_path(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}
        for e in errors
    ]
    summary = "; ".join(f"{i['field']}: {i['message']}" for i in items[:5])
    return error_response(422, "validation_error", f"invalid request: {summary}", errors=items)


_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: Any, scope: Scope) -> list[str]:
    """Every method some route of ``app`` serves at ``scope``'s path.

    Starlette's 405 names only the first route whose path matched, so ``DELETE
    /api/v1/users`` would say ``Allow: GET`` though ``POST`` works too: ask them all.
    """
    probe: Scope = {
        "type": "http",
        "path": scope["path"],
        "method": scope["method"],
        "root_path": scope.get("root_path", ""),
        "headers": [],
    }
    found: set[str] = set()
    for route in app.router.routes:
        # FastAPI keeps included routers as one entry each; their routes are inside.
        nested = getattr(route, "effective_route_contexts", None)
        for candidate in nested() if nested is not None else (route,):
            methods = getattr(candidate, "methods", None)
            if methods and candidate.matches(dict(probe))[0] != Match.NONE:
                found.update(methods)
    rank = {m: i for i, m in enumerate(_METHOD_ORDER)}
    return sorted(found, key=lambda m: (rank.get(m, len(rank)), m))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = exc.headers
    if exc.status_code == 405:
        allow = allowed_methods(request.app, request.scope)
        if allow:
            headers = {**(headers or {}), "Allow": ", ".join(allow)}
            message = f"method {request.method} is not allowed here; use {', '.join(allow)}"
    return error_response(exc.status_code, code, message, headers=headers)


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    request_id = current_request_id()
    log.exception("unhandled error", extra={"error_type": type(exc).__name__})
    return error_response(
        500,
        "internal_error",
        "the gateway hit an unexpected error; the request id identifies it in the logs",
        request_id=request_id,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, expected or not, a JSON body with ``code`` and ``message``."""
    app.add_exception_handler(AppError, _on_app_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
