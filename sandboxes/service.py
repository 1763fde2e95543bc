"""Use cases of pillar 3: create, run code in, read and write files of, stop, resume and
destroy sandboxes; quotas, idle reaping, session affinity and the audit trail.

The database holds what a sandbox is (owner, template, limits, status); the
provider holds its compute and files. Activity (last use, exec counts) and audit
rows are kept in memory and written in batches by :meth:`run_reaper`, off the
request path, and once more at shutdown. Limits and quotas are decided in
sandboxes/quotas.py, the file use cases live in sandboxes/files.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.audit.schemas import AuditItem
from gateway.audit.service import AuditLog
from gateway.auth.principal import Principal
from gateway.config import Settings
from gateway.db import Database, utcnow
from gateway.errors import AppError, Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge
from gateway.observability.tracing import operation
from gateway.policy.service import PolicyService
from sandboxes.activity import Activity
from sandboxes.audit import AuditRecord, AuditTrail, masker, secret_values
from sandboxes.files import WorkspaceFiles
from sandboxes.models import Sandbox
from sandboxes.paths import Unavailable, check_env, exec_cwd, provider_error
from sandboxes.providers.base import (
    ExecRequest,
    ExecResult,
    FileEntry,
    Limits,
    OutputSink,
    ProviderError,
    ProviderUnavailable,
    SandboxProvider,
    SandboxSpec,
    TemplateSpec,
    Usage,
)
from sandboxes.quotas import Quotas
from sandboxes.repository import SandboxRepository
from sandboxes.schemas import ExecRequestIn, SandboxCreate
from sandboxes.template_store import TemplateStore
from sandboxes.templates import BUILTIN, LANGUAGES, MAX_CODE_BYTES, code_argv, missing_on_host

log = logging.getLogger("sandboxes")


@dataclass
class PreparedExec:
    """An exec checked and ready to run (errors are raised before any output streams)."""

    row: Sandbox
    spec: SandboxSpec
    request: ExecRequest
    command: str  # masked, for the audit trail
    user_id: str
    detail: dict[str, object] = field(default_factory=dict)
    principal: Principal | None = None


class SandboxService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        providers: dict[str, SandboxProvider],
        *,
        audit: AuditLog | None = None,
        policies: PolicyService | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.providers = providers
        # The policy in force: `sandboxes/exec` rules on what runs where.
        self.policies = policies
        self.audit_log = audit or AuditLog.off()
        self.audit = AuditTrail(self.audit_log)
        self.templates = TemplateStore(db)
        self.activity = Activity(db, measure_timeout=settings.sandbox_fs_timeout_seconds * 2)
        self.quotas = Quotas(settings)
        self.files = WorkspaceFiles(self)
        self.inflight: dict[str, int] = {}

    # --- helpers ----------------------------------------------------------------------------
    def provider(self, name: str) -> SandboxProvider:
        try:
            return self.providers[name]
        except KeyError:
            raise InvalidInput(
                f"unknown sandbox provider {name!r} (one of {sorted(self.providers)})",
                code="unknown_provider",
            ) from None

    def spec(self, row: Sandbox, template: TemplateSpec | None = None) -> SandboxSpec:
        limits, defaults = row.limits or {}, self.quotas.defaults
        template = template or BUILTIN.get(row.template) or TemplateSpec(row.template, None, ())
        if row.image and template.image != row.image:
            template = TemplateSpec(
                template.name, row.image, template.languages, template.env, template.description
            )
        return SandboxSpec(
            id=row.id,
            template=template,
            limits=Limits(
                float(limits.get("cpus", defaults.cpus)),
                int(limits.get("memory_mb", defaults.memory_mb)),
                int(limits.get("pids", defaults.pids)),
                int(limits.get("disk_mb", defaults.disk_mb)),
            ),
            network="egress" if row.network == "egress" else "none",
            state=dict(row.provider_state or {}),
        )

    async def _full_spec(self, row: Sandbox) -> SandboxSpec:
        try:
            template, _ = await self.templates.resolve(row.template)
        except NotFound:
            template = None
        return self.spec(row, template)

    def _audit(self, principal: Principal | None, sandbox_id: str, action: str, **kw: Any) -> None:
        self.audit.record(
            AuditRecord(
                sandbox_id=sandbox_id,
                user_id=principal.user_id if principal else None,
                action=action,
                principal=principal,
                **kw,
            )
        )

    async def _row(self, principal: Principal, sandbox_id: str) -> Sandbox:
        async with self.db.session() as session:
            row = await SandboxRepository(session).get(sandbox_id)
        if row is None or not (principal.is_admin or row.owner_id == principal.user_id):
            raise NotFound(f"no sandbox {sandbox_id!r}", code="sandbox_not_found")
        return row

    async def _set(self, sandbox_id: str, **values: object) -> Sandbox:
        async with self.db.session() as session:
            row = await SandboxRepository(session).get(sandbox_id)
            assert row is not None
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
        return row

    async def _measure(self, sandbox_id: str) -> None:
        """Record the workspace's size as the provider measures it now."""
        async with self.db.session() as session:
            row = await SandboxRepository(session).get(sandbox_id)
        if row is None or row.status not in ("running", "stopped"):
            return
        usage = await self.provider(row.provider).usage(self.spec(row))
        changes = _measured(row, usage)
        if changes:
            await self._set(sandbox_id, **changes)

    @staticmethod
    def _require_running(row: Sandbox) -> None:
        if row.status == "stopped":
            raise Conflict(
                f"sandbox {row.id} is stopped: resume it first (POST .../resume)",
                code="sandbox_stopped",
            )
        if row.status != "running":
            raise Conflict(f"sandbox {row.id} is {row.status}", code=f"sandbox_{row.status}")

    # --- create, read -------------------------------------------------------------------------
    async def create(
        self, principal: Principal, body: SandboxCreate, *, session_key: str | None = None
    ) -> Sandbox:
        principal.require("sandboxes:write")
        provider_name = body.provider or self.settings.sandbox_provider
        provider = self.provider(provider_name)
        template, template_limits = await self.templates.resolve(body.template)
        if provider_name == "local" and (why := missing_on_host(template)):
            raise InvalidInput(why, code="template_unavailable")
        if body.network == "egress" and not self.settings.sandbox_allow_network:
            raise Forbidden(
                "sandboxes have no network here (MCPGW_SANDBOX_ALLOW_NETWORK is off)",
                code="sandbox_network_forbidden",
            )
        limits = self.quotas.limits(principal, template_limits, body.limits)
        try:
            await provider.check()
        except ProviderUnavailable as exc:
            raise Unavailable(exc.message) from exc
        team_id = self._team_of(principal, body.team_id)
        teams = self.policies.quotas if self.policies is not None else None
        async with (
            self.quotas.lock(principal.user_id),
            teams.lock(team_id) if teams is not None else contextlib.nullcontext(),
            self.db.session() as session,
        ):
            repo = SandboxRepository(session)
            await self.quotas.check(repo, principal.user_id, limits)
            if teams is not None:  # the team's max_sandboxes, checked and held until commit
                if team_id is None and len(principal.team_ids) > 1:
                    await teams.require_team(session, principal.team_ids, "sandboxes")
                await teams.check(session, team_id, "sandboxes")
            row = Sandbox(
                name=body.name,
                owner_id=principal.user_id,
                team_id=team_id,
                template=template.name,
                image=template.image if provider_name != "local" else None,
                provider=provider_name,
                status="creating",
                limits=limits.as_dict(),
                network=body.network,
                provider_state={},
                session_key=session_key,
            )
            await repo.add(row)
        started = time.perf_counter()
        try:
            attributes = {"mcpgw.sandbox.id": row.id, "mcpgw.sandbox.provider": provider_name}
            with operation("sandbox.create", attributes):
                state = await provider.create(self.spec(row, template))
        except ProviderError as exc:
            await self._set(row.id, status="error", error=exc.message)
            self._audit(principal, row.id, "create", detail={"error": exc.message})
            raise provider_error(exc) from exc
        except BaseException:
            await self._set(row.id, status="error", error="creation was interrupted")
            raise
        row = await self._set(row.id, status="running", provider_state=state, error=None)
        self._audit(
            principal,
            row.id,
            "create",
            duration_ms=(time.perf_counter() - started) * 1000,
            detail={"template": row.template, "provider": row.provider},
        )
        return row

    @staticmethod
    def _team_of(principal: Principal, asked: str | None) -> str | None:
        """The team a new sandbox counts against: the one asked for (a team of the
        creator's, or any for an admin), else the creator's only team, else none."""
        if asked is not None:
            if not (principal.is_admin or asked in principal.team_ids):
                raise Forbidden("you can only create sandboxes for teams you belong to")
            return asked
        return principal.team_ids[0] if len(principal.team_ids) == 1 else None

    async def get(self, principal: Principal, sandbox_id: str) -> Sandbox:
        principal.require("sandboxes:read")
        return await self._row(principal, sandbox_id)

    async def list_sandboxes(
        self,
        principal: Principal,
        *,
        all_users: bool = False,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[Sequence[Sandbox], int]:
        principal.require("sandboxes:read")
        if all_users and not principal.is_admin:
            raise Forbidden("only admins may list every user's sandboxes")
        async with self.db.session() as session:
            return await SandboxRepository(session).list_rows(
                owner_id=None if all_users else principal.user_id,
                status=status,
                limit=limit,
                offset=offset,
            )

    async def bound(self, principal: Principal, session_key: str) -> Sandbox | None:
        """The caller's live sandbox bound to an agent session, if any."""
        async with self.db.session() as session:
            return await SandboxRepository(session).by_session(principal.user_id, session_key)

    async def for_session(
        self, principal: Principal, session_key: str, *, template: str = "python"
    ) -> Sandbox:
        """The sandbox bound to an agent session: the same one every time (resumed if
        stopped), or a new one on first use."""
        row = await self.bound(principal, session_key)
        if row is not None:
            if row.status == "stopped":
                row = await self.resume(principal, row.id)
            if row.status == "running":
                return row
        return await self.create(
            principal, SandboxCreate(template=template), session_key=session_key
        )

    # --- exec ---------------------------------------------------------------------------------
    async def prepare_exec(
        self, principal: Principal, sandbox_id: str, body: ExecRequestIn
    ) -> PreparedExec:
        principal.require("sandboxes:execute")
        row = await self._row(principal, sandbox_id)
        self._require_running(row)
        spec = await self._full_spec(row)
        if body.code is not None:
            language = (body.language or "").lower()
            if language not in LANGUAGES:
                raise InvalidInput(
                    f"unknown language {body.language!r} (one of {sorted(LANGUAGES)})",
                    code="unknown_language",
                )
            if len(body.code.encode()) > MAX_CODE_BYTES:
                raise PayloadTooLarge(
                    f"code is limited to {MAX_CODE_BYTES} bytes; write a file and run it",
                    code="code_too_large",
                )
            argv = code_argv(language, body.code)
        elif isinstance(body.command, list):
            argv = list(body.command)
        else:
            argv = ["/bin/sh", "-c", str(body.command)]
        check_env(body.env, "env")
        check_env(body.secret_env, "secret_env")
        secrets = secret_values(body.env, body.secret_env, body.secret)
        mask = masker(secrets)
        shown = body.code if body.code is not None else body.command
        command = shown if isinstance(shown, str) else " ".join(shown or [])
        if self.policies is not None:
            asked = {"command": command, "language": body.language or "", "code": body.code or ""}
            self.policies.check(principal, "sandboxes/exec", row.name or row.id, asked)
        timeout = body.timeout or self.settings.sandbox_exec_timeout_seconds
        request = ExecRequest(
            argv=argv,
            cwd=exec_cwd(body.cwd),
            env={**body.env, **body.secret_env},
            stdin=body.stdin.encode() if body.stdin is not None else None,
            timeout=timeout,
            max_output=self.settings.sandbox_output_max_bytes,
        )
        detail: dict[str, object] = {
            "cwd": request.cwd,
            "env": sorted(request.env),  # names only, never values
            "timeout": timeout,
        }
        if body.language:
            detail["language"] = body.language
        return PreparedExec(
            row, spec, request, mask(command) or "", principal.user_id, detail, principal
        )

    async def run_exec(self, prepared: PreparedExec, sink: OutputSink | None = None) -> ExecResult:
        row, sandbox_id = prepared.row, prepared.row.id
        provider = self.provider(row.provider)
        self.inflight[sandbox_id] = self.inflight.get(sandbox_id, 0) + 1
        result: ExecResult | None = None
        try:
            attributes = {"mcpgw.sandbox.id": sandbox_id, "mcpgw.sandbox.provider": row.provider}
            with operation("sandbox.exec", attributes) as span:
                result = await provider.exec(prepared.spec, prepared.request, sink)
                if span is not None:
                    span.set_attribute("process.exit.code", result.exit_code)
            return result
        except ProviderError as exc:
            raise provider_error(exc) from exc
        finally:
            self.inflight[sandbox_id] -= 1
            if not self.inflight[sandbox_id]:
                del self.inflight[sandbox_id]
            self.activity.touch(sandbox_id, execs=1)
            if result is not None:
                self.activity.measure_soon(sandbox_id, lambda: self._measure(sandbox_id))
            detail = dict(prepared.detail)
            if result is None:
                detail["error"] = "failed or cancelled"
            else:
                detail.update(timed_out=result.timed_out, oom_killed=result.oom_killed)
            self.audit.record(
                AuditRecord(
                    sandbox_id=sandbox_id,
                    user_id=prepared.user_id,
                    principal=prepared.principal,
                    action="exec",
                    command=prepared.command,
                    exit_code=result.exit_code if result else None,
                    duration_ms=result.duration_ms if result else None,
                    detail=detail,
                )
            )

    async def exec(
        self,
        principal: Principal,
        sandbox_id: str,
        body: ExecRequestIn,
        sink: OutputSink | None = None,
    ) -> ExecResult:
        return await self.run_exec(await self.prepare_exec(principal, sandbox_id, body), sink)

    # --- files (sandboxes/files.py) -----------------------------------------------------------
    async def read_file(self, principal: Principal, sandbox_id: str, path: str) -> bytes:
        return await self.files.read_file(principal, sandbox_id, path)

    async def list_files(
        self, principal: Principal, sandbox_id: str, path: str
    ) -> list[FileEntry] | None:
        return await self.files.list_files(principal, sandbox_id, path)

    async def write_file(
        self, principal: Principal, sandbox_id: str, path: str, data: bytes
    ) -> str:
        return await self.files.write_file(principal, sandbox_id, path, data)

    async def delete_file(self, principal: Principal, sandbox_id: str, path: str) -> None:
        await self.files.delete_file(principal, sandbox_id, path)

    # --- lifecycle ----------------------------------------------------------------------------
    async def stop(
        self, principal: Principal | None, sandbox_id: str, *, row: Sandbox | None = None
    ) -> Sandbox:
        if principal is not None:
            principal.require("sandboxes:write")
            row = await self._row(principal, sandbox_id)
        assert row is not None
        if row.status == "stopped":
            return row
        self._require_running(row)
        provider, spec = self.provider(row.provider), self.spec(row)
        cpu = row.cpu_seconds
        with contextlib.suppress(ProviderError):
            cpu += (await provider.usage(spec)).cpu_seconds or 0.0
        try:
            await provider.stop(spec)
        except ProviderError as exc:
            raise provider_error(exc) from exc
        self._audit(principal, row.id, "stop")
        return await self._set(
            row.id, status="stopped", stopped_at=utcnow(), cpu_seconds=cpu, memory_bytes=None
        )

    async def resume(self, principal: Principal, sandbox_id: str) -> Sandbox:
        principal.require("sandboxes:write")
        row = await self._row(principal, sandbox_id)
        if row.status == "running":
            return row
        if row.status != "stopped":
            raise Conflict(f"sandbox {row.id} is {row.status}", code=f"sandbox_{row.status}")
        try:
            await self.provider(row.provider).resume(self.spec(row))
        except ProviderError as exc:
            raise provider_error(exc) from exc
        self._audit(principal, row.id, "resume")
        return await self._set(row.id, status="running", stopped_at=None, last_activity_at=utcnow())

    async def destroy(
        self, principal: Principal | None, sandbox_id: str, *, row: Sandbox | None = None
    ) -> Sandbox:
        if principal is not None:
            principal.require("sandboxes:write")
            row = await self._row(principal, sandbox_id)
        assert row is not None
        if row.status == "destroyed":
            return row
        try:
            await self.provider(row.provider).destroy(self.spec(row))
        except ProviderError as exc:
            raise provider_error(exc) from exc
        self.activity.forget(row.id)
        self._audit(principal, row.id, "destroy")
        return await self._set(
            row.id, status="destroyed", destroyed_at=utcnow(), disk_bytes=0, memory_bytes=None
        )

    async def bulk(
        self, principal: Principal, action: str, ids: list[str]
    ) -> list[tuple[str, Sandbox | None, str | None]]:
        """Apply stop/resume/destroy to each sandbox; one failure does not stop the rest."""
        results: list[tuple[str, Sandbox | None, str | None]] = []
        for sandbox_id in ids:
            try:
                if action == "stop":
                    row = await self.stop(principal, sandbox_id)
                elif action == "resume":
                    row = await self.resume(principal, sandbox_id)
                else:
                    row = await self.destroy(principal, sandbox_id)
                results.append((sandbox_id, row, None))
            except AppError as exc:
                results.append((sandbox_id, None, f"{exc.code}: {exc.message}"))
        return results

    async def usage(self, principal: Principal, sandbox_id: str) -> tuple[Sandbox, Usage]:
        principal.require("sandboxes:read")
        row = await self._row(principal, sandbox_id)
        usage = Usage()
        if row.status in ("running", "stopped"):
            try:
                usage = await self.provider(row.provider).usage(self.spec(row))
            except ProviderError as exc:
                raise provider_error(exc) from exc
        changes = _measured(row, usage)
        if changes:
            row = await self._set(row.id, **changes)
        if usage.disk_bytes is None:
            usage.disk_bytes = row.disk_bytes
        live = usage.cpu_seconds if row.status == "running" else 0.0
        usage.cpu_seconds = row.cpu_seconds + (live or 0.0)
        return row, usage

    def exec_count(self, row: Sandbox) -> int:
        return row.exec_count + self.activity.unwritten_execs(row.id)

    async def events(
        self, principal: Principal, sandbox_id: str, *, limit: int, offset: int
    ) -> tuple[list[AuditItem], int]:
        """The sandbox's rows of the audit trail, newest first."""
        row = await self.get(principal, sandbox_id)
        return await self.audit_log.of_target(row.id, "sandbox.*", limit=limit, offset=offset)

    # --- background: activity, audit rows, idle reaping ---------------------------------------
    async def flush(self) -> None:
        """Write pending activity and audit rows (the reaper does this; so does shutdown)."""
        await self.activity.settle()
        await self.activity.flush()
        await self.audit.flush()

    async def close(self) -> None:
        """At shutdown, after :meth:`flush`: providers let go of host resources (mounts)."""
        for provider in self.providers.values():
            try:
                if (close := getattr(provider, "close", None)) is not None:
                    await close()
            except Exception:  # shutdown goes on
                log.warning("a sandbox provider did not close cleanly", exc_info=True)

    async def reap(self, now: datetime | None = None) -> tuple[int, int]:
        """Stop sandboxes idle too long, destroy those unused too long: (stopped, destroyed)."""
        from sandboxes.reaper import reap

        return await reap(self, now)

    async def run_reaper(self, interval: float) -> None:
        """Flush and reap every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reap()
            except Exception:
                log.warning("sandbox reaper failed; will retry", exc_info=True)


def _measured(row: Sandbox, usage: Usage) -> dict[str, Any]:
    """What a fresh measurement changes on the sandbox's row: its disk, and the memory of
    a running one (what the metrics report)."""
    changes: dict[str, Any] = {}
    if usage.disk_bytes is not None and usage.disk_bytes != row.disk_bytes:
        changes["disk_bytes"] = usage.disk_bytes
    memory = usage.memory_bytes if row.status == "running" else None
    if memory != row.memory_bytes:
        changes["memory_bytes"] = memory
    return changes
