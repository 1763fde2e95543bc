"""Use cases of pillar 2: store, version, read, package, link and count skills.

Every way in (upload, folder, git import) becomes a :class:`SkillPackage` in
memory, is validated by the same rules and stored in one transaction, so a
refused skill leaves nothing behind. Contents are stored once per SHA-256; a
change makes a new immutable version, the same content makes none.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.entry import AuditEntry
from gateway.audit.service import AuditLog
from gateway.auth.principal import Principal
from gateway.config import Settings
from gateway.db import Database, utcnow
from gateway.errors import Conflict, NotFound
from gateway.observability.tracing import operation
from gateway.policy.service import PolicyService
from gateway.servers.service import ServerService
from skills import archive, tool_check
from skills.archive import Limits, SkillPackage
from skills.models import Skill, SkillFile, SkillVersion
from skills.records import (
    SkillView,
    StoreResult,
    apply_visibility,
    can_see,
    check_writable,
    content_digest,
    invalid_skill,
)
from skills.references import ToolReference
from skills.repository import SkillRepository
from skills.stats import UsageCounter
from skills.validation import SKILL_MD, ParsedSkill, Report, validate

log = logging.getLogger("skills")


class SkillService:
    def __init__(
        self,
        db: Database,
        servers: ServerService,
        settings: Settings,
        *,
        audit: AuditLog | None = None,
        policies: PolicyService | None = None,
    ) -> None:
        self.db = db
        self.audit = audit or AuditLog.off()
        self.servers = servers
        # The policy in force: `skills/load` rules on reading a skill's content.
        self.policies = policies
        self.settings = settings
        self.limits = Limits(
            max_bytes=settings.skills_max_bytes,
            max_files=settings.skills_max_files,
            max_ratio=settings.skills_max_ratio,
        )
        self.usage = UsageCounter(db)
        # Bumped after every committed change to who sees what, for caches built on
        # top (the MCP catalog); listeners hear of it (agents get list_changed).
        self.version = 0
        self.change_listeners: list[Callable[[], Awaitable[None]]] = []

    async def _changed(self) -> None:
        self.version += 1
        for listener in list(self.change_listeners):
            try:
                await listener()
            except Exception:
                log.warning("a skills change listener failed", exc_info=True)

    async def catalog(self) -> list[tuple[Skill, SkillVersion, list[SkillFile]]]:
        """Every skill at its current version with its files, for the in-memory MCP
        catalog (callers filter with :func:`can_see`); no permission check here."""
        async with self.db.session() as session:
            return await SkillRepository(session).current_versions()

    # --- usage (called by the MCP serving code on every load; `usage` writes it) ---------
    def record_load(self, name: str, principal: Principal | None = None) -> None:
        """Count (and audit) one load of skill ``name``; memory only, written off the path."""
        self.usage.record_load(name)
        self.audit.record(AuditEntry(action="skills/load", principal=principal, target=name))

    def record_download(self, name: str) -> None:
        self.usage.record_download(name)

    # --- reading -------------------------------------------------------------------------
    async def _get_row(self, repo: SkillRepository, principal: Principal, name: str) -> Skill:
        row = await repo.get_by_name(name)
        if row is None or not can_see(principal, row):
            raise NotFound(f"no skill named {name!r}", code="skill_not_found")
        return row

    async def _version(
        self, repo: SkillRepository, skill: Skill, number: int | None
    ) -> SkillVersion:
        row = await repo.version(skill.id, number or skill.version)
        if row is None:
            raise NotFound(
                f"skill {skill.name!r} has no version {number}", code="version_not_found"
            )
        return row

    async def _view(self, repo: SkillRepository, skill: Skill, number: int | None) -> SkillView:
        version = await self._version(repo, skill, number)
        versions = list(await repo.versions(skill.id))
        counts = await repo.file_counts(v.id for v in versions)
        return SkillView(
            skill=skill,
            version=version,
            files=list(await repo.files(version.id)),
            versions=[(v, *counts.get(v.id, (0, 0))) for v in versions],
            links=[link.server_name for link in await repo.links(skill.id)],
        )

    async def list_skills(
        self, principal: Principal, *, limit: int, offset: int, query: str | None = None
    ) -> tuple[list[Skill], int]:
        principal.require("skills:read")
        viewer = None if principal.is_admin else (principal.user_id, principal.team_ids)
        policy = self.policies.policy_for(principal) if self.policies is not None else None
        async with self.db.session() as session:
            repo = SkillRepository(session)
            if policy is None:
                rows, total = await repo.list_skills(
                    limit=limit, offset=offset, viewer=viewer, query=query
                )
                return list(rows), total
            # What the policy hides (skills/load rules) is left out before paging, as
            # the MCP listings do: pages and totals count only what the caller may load.
            every, _ = await repo.list_skills(limit=None, offset=0, viewer=viewer, query=query)
        kept = [r for r in every if policy.listable(principal, "skills/load", r.name)]
        return kept[offset : offset + limit], len(kept)

    def check_load(self, principal: Principal, name: str) -> None:
        """Raise PolicyDenied unless the policy lets ``principal`` load skill ``name``."""
        if self.policies is not None:
            self.policies.check(principal, "skills/load", name)

    async def get(self, principal: Principal, name: str, version: int | None = None) -> SkillView:
        principal.require("skills:read")
        self.check_load(principal, name)
        async with self.db.session() as session:
            repo = SkillRepository(session)
            return await self._view(repo, await self._get_row(repo, principal, name), version)

    async def read_file(
        self, principal: Principal, name: str, path: str, version: int | None = None
    ) -> tuple[SkillFile, bytes]:
        """One file of a skill (default: the current version) and its bytes."""
        principal.require("skills:read")
        self.check_load(principal, name)
        attributes = {"mcpgw.skill.name": name, "mcpgw.skill.file": path}
        with operation("skills.load", attributes) as span:
            async with self.db.session() as session:
                repo = SkillRepository(session)
                row = await self._get_row(repo, principal, name)
                ver = await self._version(repo, row, version)
                match = next((f for f in await repo.files(ver.id) if f.path == path), None)
                if match is None:
                    raise NotFound(f"skill {name!r} has no file {path!r}", code="file_not_found")
                data = await repo.blob(match.sha256)
            if span is not None and span.is_recording():
                size = len(data or b"")
                span.set_attributes({"mcpgw.skill.version": ver.version, "mcpgw.skill.bytes": size})
        return match, data or b""

    async def files(
        self, principal: Principal, name: str, version: int | None = None
    ) -> tuple[str, dict[str, bytes], set[str]]:
        """Every file of a skill (default: its current version): its name, the files by
        path and the paths of the executable ones."""
        principal.require("skills:read")
        self.check_load(principal, name)
        async with self.db.session() as session:
            repo = SkillRepository(session)
            row = await self._get_row(repo, principal, name)
            ver = await self._version(repo, row, version)
            files = list(await repo.files(ver.id))
            blobs = await repo.blobs({f.sha256 for f in files})
        contents = {f.path: blobs[f.sha256] for f in files}
        return row.name, contents, {f.path for f in files if f.executable}

    async def download(
        self, principal: Principal, name: str, version: int | None = None
    ) -> tuple[str, bytes]:
        """The skill as a ``.skill`` package: (file name, bytes)."""
        with operation("skills.download", {"mcpgw.skill.name": name}):
            name, contents, executable = await self.files(principal, name, version)
            data = await asyncio.to_thread(archive.build_archive, name, contents, executable)
        self.usage.record_download(name)
        self.audit.record(
            AuditEntry(
                action="skills/download", principal=principal, target=name, bytes_out=len(data)
            )
        )
        return f"{name}.skill", data

    async def stats(self, principal: Principal, name: str) -> dict[str, Any]:
        """Counts in the database plus those of this process not written yet."""
        principal.require("skills:read")
        async with self.db.session() as session:
            repo = SkillRepository(session)
            row = await self._get_row(repo, principal, name)
            versions = len(await repo.versions(row.id))
        pending = self.usage.pending(row.name)
        return {
            "name": row.name,
            "version": row.version,
            "versions": versions,
            "loads": row.load_count + pending.loads,
            "downloads": row.download_count + pending.downloads,
            "last_loaded_at": pending.last_loaded or row.last_loaded_at,
            "last_downloaded_at": pending.last_downloaded or row.last_downloaded_at,
        }

    # --- validating ----------------------------------------------------------------------
    def read_upload(self, data: bytes, filename: str | None) -> SkillPackage:
        """Unpack an upload in memory under the configured limits (raises if unsafe)."""
        return archive.read_upload(data, filename, self.limits)

    async def validate_upload(
        self, principal: Principal, data: bytes, filename: str | None, *, strict: bool
    ) -> Report:
        """The verdict on an uploaded package; nothing is stored."""
        principal.require("skills:read")
        package = await asyncio.to_thread(self.read_upload, data, filename)
        return validate(package.files, folder=package.folder, strict=strict)

    # --- storing -------------------------------------------------------------------------
    async def upload(
        self,
        principal: Principal,
        data: bytes,
        filename: str | None,
        *,
        strict: bool = True,
        visibility: str | None = None,
        team_id: str | None = None,
    ) -> StoreResult:
        """Store an uploaded ``.skill``/``.zip``/SKILL.md as a new skill or version."""
        principal.require("skills:write")
        # Inflating up to the byte limit takes a while: off the event loop.
        package = await asyncio.to_thread(self.read_upload, data, filename)
        source = {"kind": "upload", "filename": (filename or SKILL_MD)[:255]}
        return await self.store_package(
            principal,
            package,
            source=source,
            strict=strict,
            visibility=visibility,
            team_id=team_id,
            label=filename or "the upload",
        )

    async def store_directory(
        self,
        principal: Principal,
        root: Path,
        *,
        source: dict[str, Any],
        strict: bool,
        folder: str | None = None,
        visibility: str | None = None,
        team_id: str | None = None,
    ) -> StoreResult:
        """Store the skill in folder ``root`` (validated like an upload; a new version only
        when its content differs from the current one) and say what happened (created,
        changed, warnings). ``folder`` is the name the skill's folder has (default:
        ``root``'s name)."""
        principal.require("skills:write")
        package = await asyncio.to_thread(archive.read_directory, root, self.limits, folder)
        return await self.store_package(
            principal,
            package,
            source=source,
            strict=strict,
            visibility=visibility,
            team_id=team_id,
            label=str(folder or Path(root).name),
        )

    async def store_package(
        self,
        principal: Principal,
        package: SkillPackage,
        *,
        source: dict[str, Any],
        strict: bool,
        visibility: str | None = None,
        team_id: str | None = None,
        label: str = "the skill",
        links: dict[str, str] | None = None,
    ) -> StoreResult:
        """Validate and store ``package``; raises InvalidInput (422) with every problem.
        ``links`` ({server id: name}) are added to the skill's links in the same
        transaction."""
        result = await self._store_package(
            principal,
            package,
            source=source,
            strict=strict,
            visibility=visibility,
            team_id=team_id,
            label=label,
            links=links,
        )
        if result.changed or visibility is not None or team_id is not None:
            await self._changed()  # committed by now
        if result.changed:
            self.audit.change(
                "skill.create" if result.created else "skill.update",
                principal,
                result.view.skill.name,
                new={"version": result.view.version.version, "digest": result.view.version.digest,
                     "source": source},
            )  # fmt: skip
        return result

    async def _store_package(
        self,
        principal: Principal,
        package: SkillPackage,
        *,
        source: dict[str, Any],
        strict: bool,
        visibility: str | None = None,
        team_id: str | None = None,
        label: str = "the skill",
        links: dict[str, str] | None = None,
    ) -> StoreResult:
        """:meth:`store_package` before its change is announced."""
        principal.require("skills:write")
        report = validate(package.files, folder=package.folder, strict=strict)
        if not report.valid or report.skill is None:
            raise invalid_skill(report, label)
        files = dict(package.files)
        executable = set(package.executable)
        if SKILL_MD not in files:  # lenient mode accepted a lower-case skill.md
            lower = next(p for p in files if p.lower() == "skill.md")
            files[SKILL_MD] = files.pop(lower)
            executable.discard(lower)
        digests = {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}
        digest = content_digest(digests, executable)
        parsed = report.skill
        try:
            async with self._team_lock(team_id), self.db.session() as session:
                repo = SkillRepository(session)
                row = await repo.get_by_name(parsed.name)
                created = row is None
                if row is None:
                    await self._check_team(session, None, team_id)
                    row = await self._create_row(repo, principal, parsed, visibility, team_id)
                else:
                    check_writable(principal, row)
                    await self._check_team(session, row, team_id)
                if links:  # added to the links it has, with the content
                    known = {lk.server_id: lk.server_name for lk in await repo.links(row.id)}
                    await repo.replace_links(row.id, {**known, **links})
                if not created:
                    if visibility is not None or team_id is not None:
                        apply_visibility(principal, row, visibility, team_id)
                    current = await repo.version(row.id, row.version)
                    if current is not None and current.digest == digest:
                        view = await self._view(repo, row, None)
                        return StoreResult(view, False, False, report.warnings)
                    row.version += 1
                await repo.put_blobs({digests[p]: d for p, d in files.items()})
                version = self._version_row(row, parsed, digest, report, source, principal)
                version.summary = "created" if created else "new content"
                await repo.add(version)
                for path in sorted(files):
                    session.add(
                        SkillFile(
                            version_id=version.id,
                            path=path,
                            size=len(files[path]),
                            sha256=digests[path],
                            executable=path in executable,
                        )
                    )
                row.description, row.source, row.updated_at = parsed.description, source, utcnow()
                await session.flush()
                view = await self._view(repo, row, None)
        except IntegrityError:
            # A concurrent upload of the same name won the race (or a team id is unknown).
            raise Conflict(
                f"skill {parsed.name!r} could not be stored: it was changed at the same time "
                "or names an unknown team; try again",
                code="skill_conflict",
            ) from None
        log.info(
            "skill stored",
            extra={"skill": row.name, "version": row.version, "source": source.get("kind")},
        )
        missing = await self._missing(principal, view)
        return StoreResult(view, created, True, report.warnings, missing)

    def _team_lock(self, team_id: str | None) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held while a skill is given to ``team_id`` (its max_skills quota)."""
        if self.policies is None:
            return contextlib.nullcontext()
        return self.policies.quotas.lock(team_id)

    async def _check_team(
        self, session: AsyncSession, row: Skill | None, team_id: str | None
    ) -> None:
        """The team's max_skills quota, when ``row`` (None: a new skill) joins it."""
        if self.policies is None or team_id is None or (row and row.team_id == team_id):
            return
        await self.policies.quotas.check(session, team_id, "skills")

    async def _create_row(
        self,
        repo: SkillRepository,
        principal: Principal,
        parsed: ParsedSkill,
        visibility: str | None,
        team_id: str | None,
    ) -> Skill:
        row = Skill(
            name=parsed.name,
            description=parsed.description,
            owner_id=principal.user_id,
            version=1,
            visibility="private",
        )
        apply_visibility(principal, row, visibility or ("team" if team_id else "private"), team_id)
        await repo.add(row)
        return row

    @staticmethod
    def _version_row(
        row: Skill,
        parsed: ParsedSkill,
        digest: str,
        report: Report,
        source: dict[str, Any],
        principal: Principal,
    ) -> SkillVersion:
        return SkillVersion(
            skill_id=row.id,
            version=row.version,
            digest=digest,
            frontmatter_raw=parsed.frontmatter_raw,
            frontmatter=parsed.frontmatter,
            description=parsed.description,
            license=parsed.license,
            compatibility=parsed.compatibility,
            skill_metadata=parsed.metadata,
            allowed_tools=parsed.allowed_tools,
            body=parsed.body,
            warnings=[p.as_dict() for p in report.warnings],
            source=source,
            created_by=principal.user_id,
        )

    # --- changing ------------------------------------------------------------------------
    async def update(
        self, principal: Principal, name: str, *, visibility: str | None, team_id: str | None
    ) -> SkillView:
        """Change who sees a skill (not a content change: no new version)."""
        principal.require("skills:write")
        async with self._team_lock(team_id), self.db.session() as session:
            repo = SkillRepository(session)
            row = await self._get_row(repo, principal, name)
            check_writable(principal, row)
            await self._check_team(session, row, team_id)
            old = {"visibility": row.visibility, "team_id": row.team_id}
            apply_visibility(principal, row, visibility, team_id)
            row.updated_at = utcnow()
            view = await self._view(repo, row, None)
        await self._changed()
        new = {"visibility": row.visibility, "team_id": row.team_id}
        self.audit.change("skill.update", principal, name, old=old, new=new)
        return view

    async def rollback(self, principal: Principal, name: str, number: int) -> StoreResult:
        """Make version ``number``'s content current again, as a new version."""
        principal.require("skills:write")
        async with self.db.session() as session:
            repo = SkillRepository(session)
            row = await self._get_row(repo, principal, name)
            check_writable(principal, row)
            old = await self._version(repo, row, number)
            current = await self._version(repo, row, None)
            if old.digest == current.digest:
                return StoreResult(await self._view(repo, row, None), False, False)
            row.version += 1
            copy = SkillVersion(
                skill_id=row.id,
                version=row.version,
                summary=f"rolled back to version {number}",
                created_by=principal.user_id,
                **{
                    c: getattr(old, c)
                    for c in (
                        "digest",
                        "frontmatter_raw",
                        "frontmatter",
                        "description",
                        "license",
                        "compatibility",
                        "skill_metadata",
                        "allowed_tools",
                        "body",
                        "warnings",
                        "source",
                    )
                },
            )
            await repo.add(copy)
            for f in await repo.files(old.id):
                session.add(
                    SkillFile(
                        version_id=copy.id,
                        path=f.path,
                        size=f.size,
                        sha256=f.sha256,
                        executable=f.executable,
                    )
                )
            row.description, row.source, row.updated_at = old.description, old.source, utcnow()
            await session.flush()
            view = await self._view(repo, row, None)
        await self._changed()
        self.audit.change(
            "skill.rollback", principal, name, new={"version": row.version, "from": number}
        )
        return StoreResult(view, False, True)

    async def delete(self, principal: Principal, name: str) -> None:
        """Remove a skill with every version; contents no other skill uses go too."""
        principal.require("skills:write")
        async with self.db.session() as session:
            repo = SkillRepository(session)
            row = await self._get_row(repo, principal, name)
            check_writable(principal, row)
            await repo.delete(row)
        self.audit.change("skill.delete", principal, name, old={"version": row.version})
        self.usage.forget(name)
        await self._changed()
        try:
            # Separately and best effort: a blob a concurrent upload just reused stays,
            # and an orphan left now is collected by the next delete.
            async with self.db.session() as session:
                await SkillRepository(session).collect_garbage()
        except Exception:
            log.warning("could not collect unused skill contents", exc_info=True)

    # --- links to servers ----------------------------------------------------------------
    async def set_links(
        self, principal: Principal, name: str, servers: list[str], *, replace: bool
    ) -> tuple[list[str], list[ToolReference]]:
        """Link the skill to ``servers`` (replacing or adding); returns the links and the
        tools the skill names that those servers do not offer."""
        principal.require("skills:write")
        resolved: dict[str, str] = {}
        for server in dict.fromkeys(servers):
            found, _ = await self.servers.get(principal, server)  # 404 if not visible
            resolved[found.id] = found.name
        async with self.db.session() as session:
            repo = SkillRepository(session)
            row = await self._get_row(repo, principal, name)
            check_writable(principal, row)
            if not replace:
                resolved.update({lk.server_id: lk.server_name for lk in await repo.links(row.id)})
            await repo.replace_links(row.id, resolved)
            view = await self._view(repo, row, None)
        return view.links, await self._missing(principal, view)

    async def server_links(self) -> list[tuple[str, str, list[str]]]:
        """(name, description, server names) of every linked skill, for tool search's
        skill boost (no caller: it only reorders tools a caller already sees)."""
        async with self.db.session() as session:
            return await SkillRepository(session).all_links()

    async def links(self, principal: Principal, name: str) -> tuple[list[str], list[ToolReference]]:
        """The servers a skill is linked to and the tools it names they lack."""
        view = await self.get(principal, name)
        return view.links, await self._missing(principal, view)

    async def _missing(self, principal: Principal, view: SkillView) -> list[ToolReference]:
        return await tool_check.missing_tools(self.servers.catalog, principal, view)
