"""Tables of pillar 2: skills, their immutable versions, files, content blobs and links.

File contents live in ``skill_blobs`` keyed by SHA-256, so versions that share a
file share its bytes, and nothing about a skill lives on disk.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime, new_id, utcnow


class Skill(Base):
    """A skill by name; its content is the version ``version`` points at."""

    __tablename__ = "skills"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    visibility: Mapped[str] = mapped_column(String(16), default="private")  # private|team|public
    owner_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    team_id: Mapped[str | None] = mapped_column(
        ForeignKey("teams.id", ondelete="SET NULL"), nullable=True, index=True
    )
    version: Mapped[int] = mapped_column(Integer, default=1)
    source: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Usage, incremented in batches by the stats flusher (never per request).
    load_count: Mapped[int] = mapped_column(Integer, default=0)
    download_count: Mapped[int] = mapped_column(Integer, default=0)
    last_loaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_downloaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SkillVersion(Base):
    """One immutable state of a skill: its SKILL.md as written and as parsed."""

    __tablename__ = "skill_versions"
    __table_args__ = (UniqueConstraint("skill_id", "version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    skill_id: Mapped[str] = mapped_column(ForeignKey("skills.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    # SHA-256 over the sorted (path, file digest, executable) list: equal content, equal digest.
    digest: Mapped[str] = mapped_column(String(64))
    frontmatter_raw: Mapped[str] = mapped_column(Text)
    frontmatter: Mapped[dict[str, Any]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(Text)
    license: Mapped[str | None] = mapped_column(Text, nullable=True)
    compatibility: Mapped[str | None] = mapped_column(Text, nullable=True)
    skill_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    allowed_tools: Mapped[list[Any]] = mapped_column(JSON, default=list)
    body: Mapped[str] = mapped_column(Text)
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    source: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    summary: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SkillBlob(Base):
    """File content, stored once per distinct SHA-256."""

    __tablename__ = "skill_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class SkillFile(Base):
    """A file of one version (SKILL.md included), pointing at its blob."""

    __tablename__ = "skill_files"
    __table_args__ = (UniqueConstraint("version_id", "path"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    version_id: Mapped[str] = mapped_column(
        ForeignKey("skill_versions.id", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(ForeignKey("skill_blobs.sha256"), index=True)
    executable: Mapped[bool] = mapped_column(Boolean, default=False)


class SkillLink(Base):
    """A skill linked to a server whose tools it teaches (checked against its catalog)."""

    __tablename__ = "skill_links"

    skill_id: Mapped[str] = mapped_column(
        ForeignKey("skills.id", ondelete="CASCADE"), primary_key=True
    )
    server_id: Mapped[str] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    # Server names never change, so the name is kept here instead of joining pillar 1.
    server_name: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
