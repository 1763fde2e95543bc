"""The import use case: fetch a source (``skills.sources``), store each skill it holds.

Each discovered skill is validated and stored like an upload; an unchanged one
makes no new version, a changed one does. With several skills, an invalid one is
reported and the others are still stored; when exactly one skill was asked for
(or found) and it is invalid, the whole import answers 422.
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import Any

from gateway.auth.principal import Principal
from gateway.errors import InvalidInput
from skills.references import tool_problem
from skills.schemas import ImportedSkill, ImportOut, ImportRequest, ProblemOut
from skills.service import SkillService
from skills.sources import resolve_source

log = logging.getLogger("skills.import")


def _problems(items: list[dict[str, Any]]) -> list[ProblemOut]:
    return [ProblemOut.model_validate(p) for p in items]


async def import_skills(
    service: SkillService, principal: Principal, request: ImportRequest
) -> ImportOut:
    """Import every skill of ``request.source`` (or the one named); one result each."""
    principal.require("skills:write")
    async with resolve_source(
        request.source, settings=service.settings, skill=request.skill, ref=request.ref
    ) as fetched:
        results: list[ImportedSkill] = []
        for found in fetched.skills:
            source: dict[str, Any] = {
                "kind": fetched.kind,
                "url": fetched.url,
                "commit": fetched.commit,
                "ref": fetched.ref,
                "subpath": found.subpath,
            }
            if fetched.catalog_entry is not None:
                source["catalog_id"] = fetched.catalog_entry.id
            # The spec wants name == folder name; a skill at a repository's root has
            # no folder of its own (the checkout is a temporary directory), so there
            # the declared name stands in.
            folder = PurePosixPath(found.subpath).name if found.subpath not in ("", ".") else None
            try:
                result = await service.store_directory(
                    principal,
                    found.root,
                    source=source,
                    strict=request.strict,
                    folder=folder or found.name,
                    visibility=request.visibility,
                    team_id=request.team_id,
                )
            except InvalidInput as exc:
                if len(fetched.skills) == 1:
                    raise
                results.append(
                    ImportedSkill(
                        name=found.name,
                        status="invalid",
                        version=None,
                        errors=_problems(exc.details.get("errors", [])),
                        warnings=_problems(exc.details.get("warnings", [])),
                    )
                )
                continue
            status = "created" if result.created else "updated" if result.changed else "unchanged"
            warnings = [p.as_dict() for p in result.warnings]
            warnings += [tool_problem(m).as_dict() for m in result.missing_tools]
            results.append(
                ImportedSkill(
                    name=result.view.skill.name,
                    status=status,
                    version=result.view.skill.version,
                    errors=[],
                    warnings=_problems(warnings),
                )
            )
        log.info(
            "skills imported",
            extra={"source": fetched.url, "commit": fetched.commit, "count": len(results)},
        )
        return ImportOut(
            source=request.source,
            kind=fetched.kind,
            url=fetched.url,
            commit=fetched.commit,
            skills=results,
        )
