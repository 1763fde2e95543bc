"""Use cases on a sandbox's workspace files: read, list, write and delete.

Around the provider's call each checks the permission and that the sandbox is the
caller's (or the caller an admin), confines the path to the workspace, turns
provider errors into the API's, writes the audit row and notes activity. Files of a
stopped sandbox stay reachable: the provider decides whether it can serve them.
The service delegates its ``read_file`` & co. here.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from gateway.auth.principal import Principal
from gateway.errors import Conflict, InvalidInput, PayloadTooLarge
from sandboxes.audit import masker
from sandboxes.models import Sandbox
from sandboxes.paths import provider_error, workspace_path
from sandboxes.providers.base import FileEntry, ProviderError, SandboxSpec

if TYPE_CHECKING:
    from sandboxes.service import SandboxService

T = TypeVar("T")


class WorkspaceFiles:
    """The files API of :class:`SandboxService` (its rows, providers, audit trail)."""

    def __init__(self, service: SandboxService) -> None:
        self.service = service

    async def _open(
        self, principal: Principal, permission: str, sandbox_id: str, path: str
    ) -> tuple[Sandbox, SandboxSpec, str]:
        principal.require(permission)
        row = await self.service._row(principal, sandbox_id)
        if row.status not in ("running", "stopped"):
            raise Conflict(f"sandbox {row.id} is {row.status}", code=f"sandbox_{row.status}")
        return row, self.service.spec(row), workspace_path(path)

    @staticmethod
    async def _call(operation: Awaitable[T]) -> T:
        try:
            return await operation
        except ProviderError as exc:
            if exc.code == "sandbox_disk_full":  # the workspace's filesystem is full
                raise PayloadTooLarge(exc.message, code=exc.code) from exc
            raise provider_error(exc) from exc

    async def read_file(self, principal: Principal, sandbox_id: str, path: str) -> bytes:
        """The content of a file (at most MCPGW_SANDBOX_FILE_MAX_BYTES)."""
        service = self.service
        row, spec, rel = await self._open(principal, "sandboxes:read", sandbox_id, path)
        provider = service.provider(row.provider)
        started = time.perf_counter()
        try:
            data = await self._call(
                provider.read_file(spec, rel, service.settings.sandbox_file_max_bytes)
            )
        finally:  # failed reads are audited too
            service._audit(
                principal,
                row.id,
                "read",
                path=masker(())(rel or "/"),
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        service.activity.touch(row.id)
        return data

    async def list_files(
        self, principal: Principal, sandbox_id: str, path: str
    ) -> list[FileEntry] | None:
        """The entries of a directory, or None if ``path`` is a file."""
        row, spec, rel = await self._open(principal, "sandboxes:read", sandbox_id, path)
        entries = await self._call(self.service.provider(row.provider).list_files(spec, rel))
        if entries is not None:  # a file: the read that follows is audited instead
            self.service._audit(principal, row.id, "list", path=masker(())(rel or "/"))
            self.service.activity.touch(row.id)
        return entries

    async def write_file(
        self, principal: Principal, sandbox_id: str, path: str, data: bytes
    ) -> str:
        """Write a file (parents made as needed); its path relative to the workspace."""
        service = self.service
        row, spec, rel = await self._open(principal, "sandboxes:write", sandbox_id, path)
        if not rel:
            raise InvalidInput("give the path of a file to write", code="sandbox_path_invalid")
        if row.disk_bytes + len(data) > spec.limits.disk_mb * 1024 * 1024:
            raise PayloadTooLarge(
                f"the sandbox's workspace is limited to {spec.limits.disk_mb} MiB",
                code="sandbox_disk_full",
            )
        started = time.perf_counter()
        await self._call(service.provider(row.provider).write_file(spec, rel, data))
        await service._set(row.id, disk_bytes=row.disk_bytes + len(data))
        service.activity.measure_soon(row.id, lambda: service._measure(row.id))  # replaced files
        service._audit(
            principal,
            row.id,
            "write",
            path=masker(())(rel),
            duration_ms=(time.perf_counter() - started) * 1000,
            detail={"size": len(data)},
        )
        service.activity.touch(row.id)
        return rel

    async def delete_file(self, principal: Principal, sandbox_id: str, path: str) -> None:
        """Delete a file or a directory tree (never the workspace itself)."""
        row, spec, rel = await self._open(principal, "sandboxes:write", sandbox_id, path)
        if not rel:
            raise InvalidInput(
                "the workspace itself cannot be deleted", code="sandbox_path_invalid"
            )
        await self._call(self.service.provider(row.provider).delete_file(spec, rel))
        self.service._audit(principal, row.id, "delete", path=masker(())(rel))
        self.service.activity.touch(row.id)
