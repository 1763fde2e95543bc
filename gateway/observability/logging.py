"""Structured logging: one JSON object per line, request id (and, inside a traced
request, trace and span ids) attached, secrets masked.

Built on the standard library (every dependency already logs through it, so one
formatter covers uvicorn, SQLAlchemy and our code alike).
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from gateway.observability.masking import mask_mapping, mask_text

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else was passed via `extra=` and is emitted.
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured duplicate of msg
    "taskName",
}


def current_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> object:
    return _request_id.set(value)


def reset_request_id(token: object) -> None:
    _request_id.reset(token)  # type: ignore[arg-type]


class JsonFormatter(logging.Formatter):
    """Render a record as a single JSON line with masked message and fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask_text(record.getMessage()),
        }
        request_id = _request_id.get()
        if request_id:
            payload["request_id"] = request_id
        # Only a process that traces has imported tracing (the audit writer process
        # has not, and starts faster for it).
        tracing = sys.modules.get("gateway.observability.tracing")
        ids = tracing.current_ids() if tracing is not None else None
        if ids is not None:
            payload["trace_id"], payload["span_id"] = ids
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}
        if extras:
            payload.update(mask_mapping(extras))
        if record.exc_info:
            payload["exc"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(payload, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """Readable lines for a developer's terminal, still masked."""

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}
        tail = " ".join(f"{k}={v}" for k, v in mask_mapping(extras).items())
        line = f"{record.levelname:<7} {record.name}: {mask_text(record.getMessage())}"
        if tail:
            line += f"  {tail}"
        if record.exc_info:
            line += "\n" + mask_text(self.formatException(record.exc_info))
        return line


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route every logger (ours, uvicorn's, libraries') through one masked formatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Alembic narrates every MigrationContext (readiness probes make one); we log outcomes.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # We write our own access line (with request id and principal); uvicorn's would duplicate it.
    logging.getLogger("uvicorn.access").disabled = True
