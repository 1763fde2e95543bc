"""The telemetry settings use case: read, replace (at run time) and test the exporter.

The configuration at start comes from the environment (exporters.from_environment);
once an admin replaces it (``PUT /api/v1/settings/telemetry``) the stored one wins,
here and at every later start. Credentials (``api_key``, ``headers``) are sealed with
the secret box that seals server secrets and never returned; a replacement that
omits them keeps the stored ones (``"api_key": ""`` clears it).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select

from gateway.audit.service import AuditLog
from gateway.auth.principal import Principal
from gateway.crypto import SecretBox
from gateway.db import Database, utcnow
from gateway.errors import Forbidden, InvalidInput
from gateway.observability.exporters import TelemetryConfig, build_exporter, problems, resolve
from gateway.observability.models import SettingGroup
from gateway.observability.telemetry import send_test_span, start_telemetry
from gateway.observability.tracing import Telemetry

log = logging.getLogger("gateway.telemetry")
KEY = "telemetry"


class TelemetryService:
    """Owns the gateway's :class:`Telemetry` configuration."""

    def __init__(
        self, db: Database, box: SecretBox, telemetry: Telemetry, audit: AuditLog | None = None
    ) -> None:
        self.db = db
        self.box = box
        self.telemetry = telemetry
        self.audit = audit or AuditLog.off()
        self.config = TelemetryConfig()
        self.source = "default"
        self._applied: datetime | None = None  # the stored row's updated_at, once applied

    async def start(self, from_env: TelemetryConfig) -> None:
        """Apply the stored configuration, else the environment's."""
        stored = await self._stored()
        config, source = (stored, "settings") if stored is not None else (from_env, "environment")
        found = problems(config)
        if found:  # refused at start too, in words an operator can act on
            raise ValueError("; ".join(f"telemetry {f}: {m}" for f, m in found))
        start_telemetry(self.telemetry, config)
        self.config, self.source = config, source

    async def _stored(self) -> TelemetryConfig | None:
        async with self.db.session() as session:
            row = await session.get(SettingGroup, KEY)
            if row is None:
                return None
            sealed = self.box.open(row.secrets_sealed)
            api_key = sealed.get("api_key", {}).get("value")
            self._applied = row.updated_at
            return TelemetryConfig(**row.value, headers=sealed.get("headers", {}), api_key=api_key)

    async def follow(self) -> bool:
        """Apply a configuration another replica stored since this one last looked (one
        primary-key read); True when it changed. Run periodically (:meth:`run_follower`)."""
        async with self.db.session() as session:
            stamp = await session.scalar(
                select(SettingGroup.updated_at).where(SettingGroup.key == KEY)
            )
        if stamp is None or stamp == self._applied:
            return False
        config = await self._stored()
        if config is None or problems(config):
            return False
        await asyncio.to_thread(start_telemetry, self.telemetry, config)
        self.config, self.source = config, "settings"
        log.info("telemetry configuration changed on another replica: applied")
        return True

    async def run_follower(self, interval: float = 10.0) -> None:
        """Follow changes made through other replicas, every ``interval`` seconds."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.follow()
            except Exception:
                log.warning("could not read the telemetry settings", exc_info=True)

    def view(self, principal: Principal) -> dict[str, Any]:
        """The configuration as shown (no credentials), where it came from, whether on."""
        _admin(principal)
        return {**self.config.public(), "source": self.source, "enabled": self.telemetry.enabled}

    async def replace(self, principal: Principal, config: TelemetryConfig) -> dict[str, Any]:
        """Export as ``config`` says from now on, without a restart: calls already in
        flight end their spans on the old exporter, which is then flushed and closed."""
        _admin(principal)
        config = self._keep_credentials(config)
        found = problems(config)
        if found:
            raise InvalidInput(
                "; ".join(f"{f}: {m}" for f, m in found),
                errors=[{"field": f, "message": m} for f, m in found],
            )
        target = resolve(config)
        if target is not None:
            try:  # the exporter's own checks (endpoint shape, gRPC options) before storing
                build_exporter(target, config.insecure).shutdown()
            except Exception as exc:
                raise InvalidInput(
                    f"endpoint: the exporter refused it: {exc}",
                    errors=[{"field": "endpoint", "message": str(exc)}],
                ) from None
        before = self.config.public()
        async with self.db.session() as session:
            row = await session.get(SettingGroup, KEY)
            if row is None:
                row = SettingGroup(key=KEY)
                session.add(row)
            row.value = config.model_dump(exclude={"api_key", "headers"})
            secrets = config.secrets()
            row.secrets_sealed = self.box.seal(secrets) if any(secrets.values()) else None
            row.updated_at, row.updated_by = utcnow(), principal.user_id
            self._applied = row.updated_at
        # Building an exporter may open a channel; the old one's flush waits on the
        # network: neither belongs on the event loop.
        await asyncio.to_thread(start_telemetry, self.telemetry, config)
        self.config, self.source = config, "settings"
        self.audit.change("settings.telemetry", principal, KEY, old=before, new=config.public())
        return self.view(principal)

    def _keep_credentials(self, config: TelemetryConfig) -> TelemetryConfig:
        current = self.config
        if config.preset != current.preset:
            return config
        update: dict[str, Any] = {}
        if config.api_key is None and current.api_key is not None:
            update["api_key"] = current.api_key
        elif config.api_key == "":
            update["api_key"] = None
        if not config.headers and current.headers:
            update["headers"] = current.headers
        return config.model_copy(update=update) if update else config

    async def test(self, principal: Principal) -> dict[str, Any]:
        """Send one span to the configured exporter and say whether it arrived."""
        _admin(principal)
        delivered, message = await asyncio.to_thread(send_test_span, self.config)
        return {"delivered": delivered, "message": message}


def _admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("only admins may read or change telemetry settings")
