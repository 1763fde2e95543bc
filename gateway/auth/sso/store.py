"""Where sign-in providers come from: MCPGW_SSO_PROVIDERS (read-only here) and the
database, where admins add, change and remove them through the API; client secrets
sealed, never returned, never audited."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gateway.audit.service import AuditLog
from gateway.auth.models import SsoProviderRow
from gateway.auth.principal import Principal
from gateway.config_identity import SsoProvider
from gateway.crypto import SecretBox
from gateway.db import Database, utcnow
from gateway.errors import Conflict, NotFound


@dataclass(frozen=True)
class StoredProvider:
    provider: SsoProvider
    source: Literal["settings", "database"]


class ProviderStore:
    """The sign-in providers, from settings and the database."""

    def __init__(
        self, db: Database, box: SecretBox, configured: list[SsoProvider], audit: AuditLog
    ) -> None:
        self.db = db
        self.box = box
        self.configured = {p.name: p for p in configured}
        self.audit = audit

    async def all(self) -> list[StoredProvider]:
        """Settings' providers first, then the database's by name."""
        found = [StoredProvider(p, "settings") for p in self.configured.values()]
        async with self.db.session() as session:
            rows = (
                await session.scalars(select(SsoProviderRow).order_by(SsoProviderRow.name))
            ).all()
        return found + [StoredProvider(self._open(r), "database") for r in rows]

    async def get(self, name: str) -> SsoProvider | None:
        if name in self.configured:
            return self.configured[name]
        async with self.db.session() as session:
            row = await session.get(SsoProviderRow, name)
        return self._open(row) if row is not None else None

    async def create(self, principal: Principal, provider: SsoProvider) -> None:
        principal.require("settings:write")
        self._not_configured(provider.name)
        try:
            async with self.db.session() as session:
                session.add(self._row(provider))
        except IntegrityError as exc:
            raise Conflict(f"a sign-in provider named {provider.name!r} exists") from exc
        self.audit.change("sso_provider.create", principal, provider.name, new=public(provider))

    async def replace(self, principal: Principal, provider: SsoProvider) -> None:
        """Change a provider; without a new ``client_secret`` the stored one stays."""
        principal.require("settings:write")
        self._not_configured(provider.name)
        async with self.db.session() as session:
            row = await session.get(SsoProviderRow, provider.name)
            if row is None:
                raise NotFound(f"no sign-in provider named {provider.name!r}")
            old = public(self._open(row))
            fresh = self._row(provider)
            row.config = fresh.config
            row.secret_sealed = fresh.secret_sealed or row.secret_sealed
            row.updated_at = utcnow()
        self.audit.change(
            "sso_provider.update", principal, provider.name, old=old, new=public(provider)
        )

    async def delete(self, principal: Principal, name: str) -> None:
        principal.require("settings:write")
        self._not_configured(name)
        async with self.db.session() as session:
            row = await session.get(SsoProviderRow, name)
            if row is None:
                raise NotFound(f"no sign-in provider named {name!r}")
            old = public(self._open(row))
            await session.delete(row)
        self.audit.change("sso_provider.delete", principal, name, old=old)

    def _not_configured(self, name: str) -> None:
        if name in self.configured:
            raise Conflict(
                f"sign-in provider {name!r} comes from MCPGW_SSO_PROVIDERS: change it there"
            )

    def _row(self, provider: SsoProvider) -> SsoProviderRow:
        secret = provider.client_secret
        return SsoProviderRow(
            name=provider.name,
            config=provider.model_dump(mode="json", exclude={"client_secret"}),
            secret_sealed=self.box.seal({"client": {"secret": secret.get_secret_value()}})
            if secret
            else None,
        )

    def _open(self, row: SsoProviderRow) -> SsoProvider:
        secret = self.box.open(row.secret_sealed)["client"]["secret"] if row.secret_sealed else None
        return SsoProvider.model_validate({**row.config, "client_secret": secret})


def public(provider: SsoProvider) -> dict[str, object]:
    """What the audit trail and the API show of a provider: everything but the secret."""
    shown = provider.model_dump(mode="json", exclude={"client_secret"})
    shown["has_client_secret"] = provider.client_secret is not None
    return shown
