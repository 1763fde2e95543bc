"""Tables of pillar 3: sandboxes and admin-defined templates (their audit trail: gateway/audit/).

A sandbox row outlives its compute: ``stopped`` keeps the workspace, ``destroyed``
keeps the row (for the audit trail) after every provider resource is gone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime, new_id, utcnow

STATUSES = ("creating", "running", "stopped", "error", "destroyed")


class Sandbox(Base):
    """One persistent, isolated computer of one user."""

    __tablename__ = "sandboxes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), default="")
    owner_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # The team the sandbox counts against (its quota, sandboxes/service.py); None: none.
    team_id: Mapped[str | None] = mapped_column(
        ForeignKey("teams.id", ondelete="SET NULL"), nullable=True, index=True
    )
    template: Mapped[str] = mapped_column(String(64))
    image: Mapped[str | None] = mapped_column(String(255), nullable=True)
    provider: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="creating", index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # {"cpus": float, "memory_mb": int, "pids": int, "disk_mb": int}
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    network: Mapped[str] = mapped_column(String(16), default="none")  # none|egress
    # What the provider needs to find its resources again (container id, paths…).
    provider_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Agent session the sandbox is bound to (session affinity), if any.
    session_key: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Usage: counted by the service, measured by the provider.
    exec_count: Mapped[int] = mapped_column(Integer, default=0)
    cpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    disk_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # What a running sandbox's processes held when last measured (after an exec, or a
    # usage read); None once it stops: it holds none then.
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class SandboxTemplate(Base):
    """An admin-defined template (the built-in ones live in code)."""

    __tablename__ = "sandbox_templates"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    image: Mapped[str | None] = mapped_column(String(255), nullable=True)
    languages: Mapped[list[Any]] = mapped_column(JSON, default=list)
    env: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
