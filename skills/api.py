"""REST for pillar 2: ``/skills``. HTTP in and out only; the service does the work."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Query, Request, Response, UploadFile

from gateway.auth.deps import CurrentPrincipal
from gateway.errors import ERROR_RESPONSES, error_responses
from gateway.paging import Limit, Offset
from gateway.provided import provided
from gateway.schemas import Page
from skills.importing import import_skills
from skills.models import Skill, SkillVersion
from skills.records import SkillView
from skills.references import ToolReference, missing_message, tool_problem
from skills.schemas import (
    FileOut,
    ImportOut,
    ImportRequest,
    LinksOut,
    LinksRequest,
    ProblemOut,
    RollbackRequest,
    SkillOut,
    SkillSummary,
    SkillUpdate,
    StatsOut,
    ToolProblemOut,
    ValidationOut,
    VersionOut,
    Visibility,
)
from skills.service import SkillService
from skills.validation import Problem

router = APIRouter(tags=["skills"])

VersionQuery = Annotated[
    int | None, Query(ge=1, description="A past version; default: the current one.")
]
StrictQuery = Annotated[
    bool,
    Query(
        description="Unknown frontmatter fields are errors (true, the default) or warnings "
        "(false: kept as written)."
    ),
]
Upload = Annotated[
    UploadFile, File(description="A .skill or .zip (one top-level <name>/ folder) or SKILL.md.")
]
# Types the files endpoint may name; anything else (HTML, SVG, scripts) is served as
# text/plain or octet-stream so a skill's file can never run as a page of the gateway.
_INLINE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".pdf": "application/pdf",
    ".json": "application/json",
}


def _skills(request: Request) -> SkillService:
    return provided(request, "skills", SkillService)


def _summary(row: Skill) -> SkillSummary:
    return SkillSummary(
        id=row.id,
        name=row.name,
        description=row.description,
        visibility=row.visibility,
        team_id=row.team_id,
        owner_id=row.owner_id,
        version=row.version,
        source=dict(row.source or {}),
        updated_at=row.updated_at,
    )


def _problems(items: list[Problem] | list[dict[str, object]]) -> list[ProblemOut]:
    return [ProblemOut.model_validate(p.as_dict() if isinstance(p, Problem) else p) for p in items]


def _skill_out(view: SkillView, extra: list[Problem] | None = None) -> SkillOut:
    row, ver = view.skill, view.version
    return SkillOut(
        **_summary(row).model_dump(),
        created_at=row.created_at,
        shown_version=ver.version,
        frontmatter=dict(ver.frontmatter),
        frontmatter_raw=ver.frontmatter_raw,
        license=ver.license,
        compatibility=ver.compatibility,
        metadata=dict(ver.skill_metadata or {}),
        allowed_tools=[str(t) for t in ver.allowed_tools],
        body=ver.body,
        files=[
            FileOut(path=f.path, size=f.size, sha256=f.sha256, executable=f.executable)
            for f in view.files
        ],
        versions=[_version_out(v, n, size) for v, n, size in view.versions],
        linked_servers=view.links,
        warnings=_problems(list(ver.warnings or [])) + _problems(list(extra or [])),
    )


def _version_out(v: SkillVersion, count: int, size: int) -> VersionOut:
    return VersionOut(
        version=v.version,
        digest=v.digest,
        summary=v.summary,
        source=dict(v.source or {}),
        created_by=v.created_by,
        created_at=v.created_at,
        file_count=count,
        size=size,
    )


def _links_out(servers: list[str], missing: list[ToolReference]) -> LinksOut:
    return LinksOut(
        servers=servers,
        missing_tools=[
            ToolProblemOut(
                server=m.server, tool=m.tool, field=m.field, line=m.line, message=missing_message(m)
            )
            for m in missing
        ],
    )


@router.get("/skills", response_model=Page[SkillSummary], responses=ERROR_RESPONSES)
async def list_skills(
    request: Request,
    principal: CurrentPrincipal,
    q: Annotated[str | None, Query(max_length=200, description="Substring filter.")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[SkillSummary]:
    rows, total = await _skills(request).list_skills(principal, limit=limit, offset=offset, query=q)
    return Page[SkillSummary](
        items=[_summary(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.post(
    "/skills/upload",
    response_model=SkillOut,
    status_code=201,
    responses={
        **error_responses(409),
        200: {"model": SkillOut, "description": "Content unchanged"},
    },
    summary="Upload a skill (.skill, .zip or SKILL.md); a changed skill gets a new version",
)
async def upload_skill(
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    file: Upload,
    strict: StrictQuery = True,
    visibility: Annotated[Visibility | None, Query()] = None,
    team_id: Annotated[str | None, Query(max_length=36)] = None,
) -> SkillOut:
    data = await file.read()
    result = await _skills(request).upload(
        principal, data, file.filename, strict=strict, visibility=visibility, team_id=team_id
    )
    if not result.changed:
        response.status_code = 200
    return _skill_out(result.view, [tool_problem(m) for m in result.missing_tools])


@router.post(
    "/skills/validate",
    response_model=ValidationOut,
    responses=ERROR_RESPONSES,
    summary="Validate a package without storing it",
)
async def validate_skill(
    request: Request, principal: CurrentPrincipal, file: Upload, strict: StrictQuery = True
) -> ValidationOut:
    report = await _skills(request).validate_upload(
        principal, await file.read(), file.filename, strict=strict
    )
    return ValidationOut.model_validate(report.as_dict())


@router.post(
    "/skills/import",
    response_model=ImportOut,
    responses=error_responses(404, 409, 502),
    summary="Import skills from a git repository, a local path or the catalog",
)
async def import_skill(
    request: Request, principal: CurrentPrincipal, body: ImportRequest
) -> ImportOut:
    return await import_skills(_skills(request), principal, body)


@router.get("/skills/{name}", response_model=SkillOut, responses=ERROR_RESPONSES)
async def get_skill(
    request: Request, principal: CurrentPrincipal, name: str, version: VersionQuery = None
) -> SkillOut:
    return _skill_out(await _skills(request).get(principal, name, version))


@router.patch("/skills/{name}", response_model=SkillOut, responses=ERROR_RESPONSES)
async def update_skill(
    request: Request, principal: CurrentPrincipal, name: str, body: SkillUpdate
) -> SkillOut:
    view = await _skills(request).update(
        principal, name, visibility=body.visibility, team_id=body.team_id
    )
    return _skill_out(view)


@router.delete("/skills/{name}", status_code=204, responses=ERROR_RESPONSES)
async def delete_skill(request: Request, principal: CurrentPrincipal, name: str) -> Response:
    await _skills(request).delete(principal, name)
    return Response(status_code=204)


@router.get("/skills/{name}/versions", response_model=list[VersionOut], responses=ERROR_RESPONSES)
async def skill_versions(
    request: Request, principal: CurrentPrincipal, name: str
) -> list[VersionOut]:
    view = await _skills(request).get(principal, name)
    return [_version_out(v, n, size) for v, n, size in view.versions]


@router.post("/skills/{name}/rollback", response_model=SkillOut, responses=ERROR_RESPONSES)
async def rollback_skill(
    request: Request, principal: CurrentPrincipal, name: str, body: RollbackRequest
) -> SkillOut:
    result = await _skills(request).rollback(principal, name, body.version)
    return _skill_out(result.view)


@router.get(
    "/skills/{name}/download",
    responses={**ERROR_RESPONSES, 200: {"content": {"application/zip": {}}}},
    response_class=Response,
    summary="The skill as a .skill package (a zip with one <name>/ folder)",
)
async def download_skill(
    request: Request, principal: CurrentPrincipal, name: str, version: VersionQuery = None
) -> Response:
    filename, data = await _skills(request).download(principal, name, version)
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{quote(filename)}"'},
    )


@router.get(
    "/skills/{name}/files/{path:path}",
    responses={**ERROR_RESPONSES, 200: {"content": {"application/octet-stream": {}}}},
    response_class=Response,
    summary="One file of a skill, byte for byte",
)
async def skill_file(
    request: Request,
    principal: CurrentPrincipal,
    name: str,
    path: str,
    version: VersionQuery = None,
) -> Response:
    row, data = await _skills(request).read_file(principal, name, path, version)
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path else ""
    media = _INLINE_TYPES.get(suffix)
    if media is None:
        try:
            data.decode("utf-8")
            media = "text/plain; charset=utf-8"
        except UnicodeDecodeError:
            media = "application/octet-stream"
    return Response(
        data,
        media_type=media,
        headers={
            "ETag": f'"{row.sha256}"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
        },
    )


@router.get("/skills/{name}/links", response_model=LinksOut, responses=ERROR_RESPONSES)
async def skill_links(request: Request, principal: CurrentPrincipal, name: str) -> LinksOut:
    return _links_out(*await _skills(request).links(principal, name))


@router.put(
    "/skills/{name}/links",
    response_model=LinksOut,
    responses=ERROR_RESPONSES,
    summary="Link the skill to exactly these servers; reports tools they lack",
)
async def replace_links(
    request: Request, principal: CurrentPrincipal, name: str, body: LinksRequest
) -> LinksOut:
    return _links_out(
        *await _skills(request).set_links(principal, name, body.servers, replace=True)
    )


@router.post(
    "/skills/{name}/links",
    response_model=LinksOut,
    responses=ERROR_RESPONSES,
    summary="Link the skill to more servers; reports tools they lack",
)
async def add_links(
    request: Request, principal: CurrentPrincipal, name: str, body: LinksRequest
) -> LinksOut:
    return _links_out(
        *await _skills(request).set_links(principal, name, body.servers, replace=False)
    )


@router.get("/skills/{name}/stats", response_model=StatsOut, responses=ERROR_RESPONSES)
async def skill_stats(request: Request, principal: CurrentPrincipal, name: str) -> StatsOut:
    return StatsOut.model_validate(await _skills(request).stats(principal, name))
