"""The audit trail of sandbox use: a structured log line and a row of the platform's
audit trail (gateway/audit/) per exec and file operation.

Every exec and file operation is recorded with who, which sandbox, what (the
command or path, masked), the exit code and the duration — never output, never
a secret value. :func:`masker` builds the masking for one request: values of
variables the caller marked secret, values of secret-looking variable names,
and the token shapes of :mod:`gateway.observability.masking`.

Rows are queued in memory and written in batches by the audit writer (and at
shutdown), off the request path; the log line is written at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.audit.entry import AuditEntry
from gateway.audit.service import AuditLog
from gateway.auth.principal import Principal
from gateway.observability.masking import SECRET_FIELD_NAMES, mask_text

log = logging.getLogger("sandboxes.audit")

MAX_TEXT = 4000  # longest command/path kept in a record


def secret_values(
    env: Mapping[str, str], secret_env: Mapping[str, str], secret_names: Iterable[str]
) -> tuple[str, ...]:
    """Every value that must never be written out for this request."""
    names = set(secret_names)
    values = [v for v in secret_env.values() if v]
    values += [v for k, v in env.items() if v and (k in names or SECRET_FIELD_NAMES.search(k))]
    # longest first, so a secret that contains another is masked whole
    return tuple(sorted(set(values), key=len, reverse=True))


def masker(secrets: tuple[str, ...]) -> Callable[[str | None], str | None]:
    def mask(text: str | None) -> str | None:
        if text is None:
            return None
        return mask_text(text, secrets)[:MAX_TEXT]

    return mask


@dataclass
class AuditRecord:
    sandbox_id: str
    user_id: str | None
    action: str  # create|exec|read|write|list|delete|stop|resume|destroy|…
    command: str | None = None  # masked
    path: str | None = None  # masked
    exit_code: int | None = None
    duration_ms: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # masked by the caller
    principal: Principal | None = None


def _outcome(rec: AuditRecord) -> str:
    if "error" in rec.detail:
        return "error"
    if rec.detail.get("timed_out"):
        return "timeout"
    return "tool_error" if rec.exit_code not in (None, 0) else "ok"


class AuditTrail:
    """Writes each record as a log line at once and into the platform's audit trail
    (``sandbox.<action>`` rows, target the sandbox id), which writes it off the path."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def record(self, rec: AuditRecord) -> None:
        log.info(
            "sandbox %s",
            rec.action,
            extra={
                "audit": "sandbox",
                "sandbox_id": rec.sandbox_id,
                "user_id": rec.user_id,
                "action": rec.action,
                "command": rec.command,
                "path": rec.path,
                "exit_code": rec.exit_code,
                "duration_ms": None if rec.duration_ms is None else round(rec.duration_ms, 1),
                **{f"detail_{k}": v for k, v in rec.detail.items()},
            },
        )
        arguments = {k: v for k, v in (("command", rec.command), ("path", rec.path)) if v}
        detail = dict(rec.detail)
        if rec.exit_code is not None:
            detail["exit_code"] = rec.exit_code
        error = detail.get("error")
        self.audit.record(
            AuditEntry(
                action=f"sandbox.{rec.action}",
                outcome=_outcome(rec),
                principal=rec.principal,
                actor=None if rec.principal else {"user_id": rec.user_id},
                target=rec.sandbox_id,
                arguments=arguments or None,
                detail=detail or None,
                error=error if isinstance(error, str) else None,
                latency_ms=rec.duration_ms,
            )
        )

    async def flush(self) -> None:
        """Write queued rows (the audit writer does this on its own, too)."""
        await self.audit.flush()
