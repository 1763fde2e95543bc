"""Shapes of the audit API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, Field

from gateway.audit.models import AuditEvent


class ActorOut(BaseModel):
    user_id: str | None
    email: str | None
    key_id: str | None
    key_prefix: str | None
    team: str | None
    role: str | None
    auth_method: str | None


class ClientOut(BaseModel):
    ip: str | None
    user_agent: str | None
    name: str | None
    version: str | None
    protocol: str | None


class ErrorOut(BaseModel):
    code: str | None
    message: str | None


class AuditItem(BaseModel):
    """One audited event."""

    id: str
    ts: datetime
    request_id: str | None
    trace_id: str | None
    actor: ActorOut
    client: ClientOut
    action: str = Field(examples=["tools/call", "server.create", "key.revoke"])
    route: str | None = Field(None, description="rest, mcp, mcp-fast or meta (tool calls)")
    server: str | None
    target: str | None
    via: str | None
    arguments: Any = Field(None, description="Masked; cut beyond 8 KiB with `_truncated`.")
    detail: Any = None
    outcome: str = Field(
        examples=["ok", "tool_error", "error", "denied", "rate_limited", "timeout"]
    )
    error: ErrorOut | None
    latency_ms: float | None
    bytes_in: int | None
    bytes_out: int | None
    tokens: int | None = Field(None, description="Estimated tokens of the result.")
    stream: str
    seq: int
    hash: str

    @classmethod
    def of(cls, e: AuditEvent) -> AuditItem:
        return cls(
            id=e.id,
            ts=e.ts,
            request_id=e.request_id,
            trace_id=e.trace_id,
            actor=ActorOut(
                user_id=e.actor_user_id,
                email=e.actor_email,
                key_id=e.actor_key_id,
                key_prefix=e.actor_key_prefix,
                team=e.actor_team,
                role=e.actor_role,
                auth_method=e.auth_method,
            ),
            client=ClientOut(
                ip=e.client_ip,
                user_agent=e.user_agent,
                name=e.client_name,
                version=e.client_version,
                protocol=e.protocol,
            ),
            action=e.action,
            route=e.route,
            server=e.server,
            target=e.target,
            via=e.via,
            arguments=None if e.arguments is None else orjson.loads(e.arguments),
            detail=None if e.detail is None else orjson.loads(e.detail),
            outcome=e.outcome,
            error=None
            if e.error is None and e.error_code is None
            else ErrorOut(code=e.error_code, message=e.error),
            latency_ms=e.latency_ms,
            bytes_in=e.bytes_in,
            bytes_out=e.bytes_out,
            tokens=e.tokens,
            stream=e.stream,
            seq=e.seq,
            hash=e.hash,
        )


class AuditPage(BaseModel):
    items: list[AuditItem]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for older rows.")


class UsageRow(BaseModel):
    key: str | None = Field(description="The server, tool, user or team (by `by`).")
    calls: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    tokens: int


class UsageOut(BaseModel):
    by: str
    since: datetime | None
    until: datetime | None
    items: list[UsageRow]


class BrokenLink(BaseModel):
    stream: str
    seq: int
    id: str | None
    problem: str


class VerifyOut(BaseModel):
    ok: bool
    rows: int
    streams: int
    heads: dict[str, str] = Field(description="Each stream's last hash, to anchor elsewhere.")
    broken: BrokenLink | None


class PruneOut(BaseModel):
    cutoff: datetime
    dry_run: bool
    rows: int
    streams: int
