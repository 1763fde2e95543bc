"""Limits of new sandboxes and the per-user quotas on them.

A sandbox's limits are what its creator asked for, over its template's, over the
defaults (MCPGW_SANDBOX_CPUS, _MEMORY_MB, _PIDS, _DISK_MB); only admins may ask for
more than the template and the defaults give. Each user may have
MCPGW_SANDBOX_MAX_PER_USER sandboxes that are not destroyed, whose disk limits add up
to MCPGW_SANDBOX_MAX_DISK_MB_PER_USER at most.
"""

from __future__ import annotations

import asyncio

from gateway.auth.principal import Principal
from gateway.config import Settings
from gateway.errors import Conflict, Forbidden
from sandboxes.providers.base import Limits
from sandboxes.repository import SandboxRepository
from sandboxes.schemas import LimitsIn


class Quotas:
    """Decides the limits of a new sandbox and whether its owner may have one more."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def defaults(self) -> Limits:
        """The limits of a sandbox that neither its template nor its creator set."""
        s = self.settings
        return Limits(s.sandbox_cpus, s.sandbox_memory_mb, s.sandbox_pids, s.sandbox_disk_mb)

    def limits(
        self, principal: Principal, template_limits: dict[str, object], asked: LimitsIn | None
    ) -> Limits:
        """The limits of a new sandbox; :class:`Forbidden` if a non-admin asks for more
        than the defaults and the template give."""
        base = self.defaults.as_dict() | template_limits
        wanted = base | (asked.model_dump(exclude_none=True) if asked else {})
        if not principal.is_admin:
            over = [k for k, v in wanted.items() if float(v) > float(base[k])]
            if over:
                raise Forbidden(
                    f"only admins may raise sandbox limits above the defaults ({', '.join(over)})",
                    code="sandbox_limits_forbidden",
                )
        return Limits(
            float(wanted["cpus"]),
            int(wanted["memory_mb"]),
            int(wanted["pids"]),
            int(wanted["disk_mb"]),
        )

    def lock(self, user_id: str) -> asyncio.Lock:
        """Held from :meth:`check` until the new row is added, so that two creates at
        once cannot both pass the check on the same count."""
        return self._locks.setdefault(user_id, asyncio.Lock())

    async def check(self, repo: SandboxRepository, user_id: str, limits: Limits) -> None:
        """:class:`Conflict` (``sandbox_quota_exceeded``) if one more sandbox with
        ``limits`` would take the user over a quota; call under :meth:`lock`."""
        count, disk, reserved = await repo.count_live(user_id, self.defaults.disk_mb)
        if count >= self.settings.sandbox_max_per_user:
            raise Conflict(
                f"you have {count} sandboxes, the most allowed "
                f"(MCPGW_SANDBOX_MAX_PER_USER={self.settings.sandbox_max_per_user}); "
                "destroy one first",
                code="sandbox_quota_exceeded",
            )
        # Disk limits are hard (a filesystem's size): the total is their sum (+ usage seen)
        total = self.settings.sandbox_max_disk_mb_per_user
        if reserved + limits.disk_mb > total or disk >= total * 1024 * 1024:
            raise Conflict(
                f"your sandboxes may have {total} MiB of disk together "
                f"(MCPGW_SANDBOX_MAX_DISK_MB_PER_USER); yours have "
                f"{max(reserved, disk >> 20)} MiB and this one asks for {limits.disk_mb}: "
                "destroy one or ask for less (limits.disk_mb)",
                code="sandbox_quota_exceeded",
            )
