"""The audit trail of sandbox use: a structured log line now, a ``sandbox_events`` row soon.

Every exec and file operation is recorded with who, which sandbox, what (the
command or path, masked), the exit code and the duration — never output, never
a secret value. :func:`masker` builds the masking for one request: values of
variables the caller marked secret, values of secret-looking variable names,
and the token shapes of :mod:`gateway.observability.masking`.

Rows are queued in memory and written in batches by the reaper loop (and at
shutdown), off the request path; the log line is written at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.batching import WriteBehind
from gateway.db import Database, new_id, utcnow
from gateway.observability.masking import SECRET_FIELD_NAMES, mask_text
from sandboxes.models import SandboxEvent

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
    at: datetime = field(default_factory=utcnow)
    id: str = field(default_factory=new_id)


class AuditTrail:
    """Writes each record as a log line at once and as a row in the next batch."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # by record id (unique: never merged), in the order recorded
        self._pending: WriteBehind[str, AuditRecord] = WriteBehind(
            "sandbox audit rows", self._write
        )

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
        self._pending.note(rec.id, rec)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Write queued rows; on failure they stay queued for the next try."""
        await self._pending.flush()

    async def _write(self, batch: dict[str, AuditRecord]) -> None:
        async with self.db.session() as session:
            session.add_all(
                SandboxEvent(
                    id=r.id,
                    sandbox_id=r.sandbox_id,
                    user_id=r.user_id,
                    action=r.action,
                    command=r.command,
                    path=r.path,
                    exit_code=r.exit_code,
                    duration_ms=r.duration_ms,
                    detail=r.detail,
                    at=r.at,
                )
                for r in batch.values()
            )
