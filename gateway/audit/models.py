"""Tables of the audit trail: one row per audited event, and the boundaries retention
left behind (so the hash chain stays verifiable after old rows are pruned)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime

# SQLite auto-increments only an INTEGER PRIMARY KEY.
_POSITION = BigInteger().with_variant(Integer(), "sqlite")


class AuditEvent(Base):
    """One audited event: who, from where, did what to what, with which outcome.

    ``arguments`` and ``detail`` hold canonical JSON text (sorted keys), masked before
    it was written: the row's hash covers exactly the stored text. ``stream``/``seq``/
    ``prev_hash``/``hash`` chain the rows of one writer (chain.py).
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("stream", "seq", name="uq_audit_events_stream_seq"),
        Index("ix_audit_events_ts_id", "ts", "id"),
        Index("ix_audit_events_server_ts", "server", "ts"),
        Index("ix_audit_events_actor_ts", "actor_user_id", "ts"),
        Index("ix_audit_events_email_ts", "actor_email", "ts"),
        Index("ix_audit_events_team_ts", "actor_team", "ts"),
        Index("ix_audit_events_action_ts", "action", "ts"),
        Index("ix_audit_events_outcome_ts", "outcome", "ts"),
        Index("ix_audit_events_target_ts", "target", "ts"),
    )

    pos: Mapped[int] = mapped_column(_POSITION, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    trace_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    actor_user_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    actor_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    actor_key_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    actor_key_prefix: Mapped[str | None] = mapped_column(String(32), nullable=True)
    actor_team: Mapped[str | None] = mapped_column(String(36), nullable=True)
    actor_role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    auth_method: Mapped[str | None] = mapped_column(String(16), nullable=True)
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(256), nullable=True)
    client_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    client_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    protocol: Mapped[str | None] = mapped_column(String(16), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    route: Mapped[str | None] = mapped_column(String(16), nullable=True)
    server: Mapped[str | None] = mapped_column(String(128), nullable=True)
    target: Mapped[str | None] = mapped_column(String(512), nullable=True)
    via: Mapped[str | None] = mapped_column(String(64), nullable=True)
    arguments: Mapped[str | None] = mapped_column(Text, nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    bytes_in: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bytes_out: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    stream: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditBoundary(Base):
    """Where retention cut a stream: the last pruned row's seq and hash, which the first
    remaining row's ``prev_hash`` must equal."""

    __tablename__ = "audit_boundaries"

    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    pruned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
