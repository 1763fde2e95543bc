"""Gateway-wide settings changed at run time (``/api/v1/settings/...``): one row per
settings group, its credentials sealed with the same secret box as server secrets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime, utcnow


class SettingGroup(Base):
    """One group of settings (``telemetry``): plain values and sealed credentials."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secrets_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
