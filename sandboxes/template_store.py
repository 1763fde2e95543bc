"""Sandbox templates as stored: the admin-defined ones in ``sandbox_templates`` over the
built-in ones (python, node, multi), and the admin operations on them."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.auth.principal import Principal
from gateway.db import Database
from gateway.errors import Forbidden, InvalidInput, NotFound
from sandboxes.models import SandboxTemplate
from sandboxes.paths import check_env
from sandboxes.providers.base import TemplateSpec
from sandboxes.repository import SandboxRepository
from sandboxes.schemas import TemplateIn
from sandboxes.templates import BUILTIN, LANGUAGES


class TemplateStore:
    """Resolves template names for new sandboxes; admins add and remove their own."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def resolve(self, name: str) -> tuple[TemplateSpec, dict[str, object]]:
        """The template called ``name`` and the limits it sets (an admin's wins over a
        built-in of the same name); :class:`NotFound` if there is none."""
        async with self.db.session() as session:
            row = await SandboxRepository(session).template(name)
        if row is not None:
            spec = TemplateSpec(
                name=row.name,
                image=row.image,
                languages=tuple(str(x) for x in row.languages),
                env={str(k): str(v) for k, v in (row.env or {}).items()},
                description=row.description,
            )
            return spec, dict(row.limits or {})
        if name in BUILTIN:
            return BUILTIN[name], {}
        raise NotFound(f"no sandbox template named {name!r}", code="template_not_found")

    async def list(self) -> tuple[Sequence[SandboxTemplate], dict[str, TemplateSpec]]:
        """Admin-defined templates and the built-in ones."""
        async with self.db.session() as session:
            return await SandboxRepository(session).templates(), BUILTIN

    async def put(self, principal: Principal, body: TemplateIn) -> SandboxTemplate:
        """Define or replace an admin template."""
        if not principal.is_admin:
            raise Forbidden("only admins may define sandbox templates")
        unknown = [lang for lang in body.languages if lang not in LANGUAGES]
        if unknown:
            raise InvalidInput(f"unknown languages {unknown} (one of {sorted(LANGUAGES)})")
        check_env(body.env, "env")  # admins too: LD_PRELOAD & co. never reach a sandbox
        async with self.db.session() as session:
            repo = SandboxRepository(session)
            row = await repo.template(body.name)
            if row is None:
                row = SandboxTemplate(name=body.name, created_by=principal.user_id)
                session.add(row)
            row.description, row.image = body.description, body.image
            row.languages, row.env = list(body.languages), dict(body.env)
            row.limits = body.limits.model_dump(exclude_none=True) if body.limits else {}
        return row

    async def remove(self, principal: Principal, name: str) -> None:
        """Remove an admin template (built-in ones cannot be removed)."""
        if not principal.is_admin:
            raise Forbidden("only admins may remove sandbox templates")
        async with self.db.session() as session:
            repo = SandboxRepository(session)
            row = await repo.template(name)
            if row is None:
                raise NotFound(f"no admin-defined template {name!r}", code="template_not_found")
            await repo.delete_template(row)
