"""``mcpgw skills …``: validate and package skills locally; upload, import and manage
them on a running gateway (``--url``/``--key``).

``validate`` and ``package`` work offline with the same rules and limits the
gateway applies to uploads, so a skill that passes here is accepted there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway.cli_client import (
    DEFAULT_URL,
    GatewayClient,
    KeyOption,
    UrlOption,
    print_json,
    print_table,
)
from gateway.config import ConfigError, load_settings

if TYPE_CHECKING:  # the skills modules pull in FastAPI: imported when a command runs
    from skills.archive import Limits, SkillPackage
    from skills.validation import Problem, Report

skills_app = typer.Typer(
    help="Agent Skills: validate and package locally; upload, import and manage on a gateway."
)

StrictOption = Annotated[
    bool,
    typer.Option(
        "--strict/--lenient",
        help="--strict (default, as the gateway): unknown frontmatter fields are errors; "
        "--lenient: warnings.",
    ),
]


def _limits() -> Limits:
    from skills.archive import Limits

    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    return Limits(settings.skills_max_bytes, settings.skills_max_files, settings.skills_max_ratio)


def read_path(path: Path, limits: Limits) -> SkillPackage:
    """A skill folder, a SKILL.md (its folder is the skill) or a .skill/.zip file."""
    from skills import archive

    if path.is_dir():
        return archive.read_directory(path, limits)
    if path.name.lower() == "skill.md":
        return archive.read_directory(path.resolve().parent, limits)
    return archive.read_upload(path.read_bytes(), path.name, limits)


def _load(path: Path) -> SkillPackage:
    from gateway.errors import AppError

    if not path.exists():
        raise typer.BadParameter(f"no such file or folder: {path}", param_hint="PATH")
    try:
        return read_path(path, _limits())
    except AppError as exc:
        typer.echo(f"error: {path}: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    except OSError as exc:
        typer.echo(f"error: cannot read {path}: {exc}", err=True)
        raise typer.Exit(1) from exc


def _print_problems(problems: list[Problem]) -> None:
    for p in problems:
        where = p.field + (f" (line {p.line})" if p.line else "")
        typer.echo(f"{p.severity:<8} {where}: {p.message}", err=True)


def _summary(report: Report, package: SkillPackage) -> str:
    size = sum(len(d) for d in package.files.values())
    return f"{len(package.files)} files, {size} bytes, {len(report.warnings)} warning(s)"


@skills_app.command("validate")
def skills_validate(
    path: Annotated[Path, typer.Argument(help="Skill folder, SKILL.md, .skill or .zip.")],
    strict: StrictOption = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check a skill against the Agent Skills specification; exit 1 if it has errors.

    Every problem is listed with its field and SKILL.md line.
    """
    from skills.validation import validate

    package = _load(path)
    report = validate(package.files, folder=package.folder, strict=strict)
    if as_json:
        print_json(report.as_dict())
    else:
        _print_problems(report.problems)
    if not report.valid:
        if not as_json:
            typer.echo(f"{path}: not a valid skill ({len(report.errors)} error(s))", err=True)
        raise typer.Exit(1)
    if not as_json:
        name = report.skill.name if report.skill else "?"
        typer.echo(f"{path}: valid skill {name!r} ({_summary(report, package)})")


@skills_app.command("package")
def skills_package(
    folder: Annotated[Path, typer.Argument(help="The skill's folder (holding SKILL.md).")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File or folder to write (default: ./<name>.skill)."),
    ] = None,
    strict: StrictOption = True,
) -> None:
    """Validate a skill folder and write it as a .skill package (a zip with <name>/ on
    top; the same files always give the same bytes)."""
    from skills import archive
    from skills.validation import SKILL_MD, validate

    if not folder.is_dir():
        raise typer.BadParameter(f"not a folder: {folder}", param_hint="FOLDER")
    package = _load(folder)
    report = validate(package.files, folder=package.folder, strict=strict)
    _print_problems(report.problems)
    if not report.valid or report.skill is None:
        typer.echo(f"{folder}: not packaged: {len(report.errors)} error(s)", err=True)
        raise typer.Exit(1)
    name = report.skill.name
    files = dict(package.files)
    if SKILL_MD not in files:  # --lenient accepted skill.md; packages carry SKILL.md
        lower = next(p for p in files if p.lower() == "skill.md")
        files[SKILL_MD] = files.pop(lower)
    data = archive.build_archive(name, files, package.executable & set(files))
    target = output or Path(f"{name}.skill")
    if target.is_dir():
        target = target / f"{name}.skill"
    target.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    typer.echo(f"wrote {target} ({_summary(report, package)}; sha256 {digest})")


# --- talking to a running gateway --------------------------------------------------------
def _skill_line(skill: dict[str, Any]) -> str:
    return (
        f"{skill['name']} v{skill['version']} ({skill['visibility']}, {len(skill['files'])} files)"
    )


@skills_app.command("upload")
def skills_upload(
    file: Annotated[Path, typer.Argument(help="A .skill, .zip, SKILL.md or a skill folder.")],
    strict: StrictOption = True,
    visibility: Annotated[
        str | None, typer.Option(help="private, team or public (default: private).")
    ] = None,
    team: Annotated[str | None, typer.Option("--team", help="Team id that owns it.")] = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Upload a skill; a changed skill becomes a new version. A folder is packaged first."""
    from skills import archive

    if file.is_dir():
        package = _load(file)
        data, filename = (
            archive.build_archive(package.folder or file.name, package.files, package.executable),
            f"{file.name}.skill",
        )
    else:
        data, filename = file.read_bytes(), file.name
    params: dict[str, Any] = {"strict": strict}
    if visibility:
        params["visibility"] = visibility
    if team:
        params["team_id"] = team
    stored = GatewayClient(url, key, timeout=120).request(
        "POST", "/api/v1/skills/upload", files={"file": (filename, data)}, params=params
    )
    typer.echo(f"stored {_skill_line(stored)}")
    for w in stored.get("warnings", []):
        typer.echo(f"warning  {w['field']}: {w['message']}", err=True)


@skills_app.command("import")
def skills_import(
    source: Annotated[
        str, typer.Argument(help="owner/repo, owner/repo/path, owner/repo@skill, a git URL, ...")
    ],
    skill: Annotated[str | None, typer.Option(help="Import only this skill.")] = None,
    ref: Annotated[str | None, typer.Option(help="Branch, tag or commit.")] = None,
    strict: StrictOption = True,
    visibility: Annotated[str | None, typer.Option(help="private, team or public.")] = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Import skills from a git repository (or the catalog) into the gateway."""
    body: dict[str, Any] = {"source": source, "strict": strict}
    for field, value in (("skill", skill), ("ref", ref), ("visibility", visibility)):
        if value:
            body[field] = value
    result = GatewayClient(url, key, timeout=600).request(
        "POST", "/api/v1/skills/import", json=body
    )
    commit = (result.get("commit") or "")[:12]
    typer.echo(f"{result['url']}" + (f" @ {commit}" if commit else ""))
    print_table(result["skills"], ["name", "status", "version"])
    if any(s["status"] == "invalid" for s in result["skills"]):
        for s in result["skills"]:
            for e in s["errors"]:
                typer.echo(f"error    {s['name']}: {e['field']}: {e['message']}", err=True)
        raise typer.Exit(1)


@skills_app.command("list")
def skills_list(url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """List the skills you can see."""
    page = GatewayClient(url, key).request("GET", "/api/v1/skills", params={"limit": 1000})
    print_table(page["items"], ["name", "version", "visibility", "description"])


@skills_app.command("show")
def skills_show(name: str, url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """Show a skill's frontmatter, files and versions as JSON."""
    skill = GatewayClient(url, key).request("GET", f"/api/v1/skills/{name}")
    skill.pop("body", None)
    typer.echo(json.dumps(skill, indent=2))


@skills_app.command("download")
def skills_download(
    name: str,
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
    version: Annotated[int | None, typer.Option(min=1)] = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Download a skill as NAME.skill."""
    client = GatewayClient(url, key, timeout=120)
    params = {"version": version} if version else None
    response = client.http.get(f"/api/v1/skills/{name}/download", params=params)
    if response.status_code >= 400:
        client.request("GET", f"/api/v1/skills/{name}/download", params=params)  # prints why
    target = output or Path(f"{name}.skill")
    if target.is_dir():
        target = target / f"{name}.skill"
    target.write_bytes(response.content)
    typer.echo(f"wrote {target} ({len(response.content)} bytes)")


@skills_app.command("remove")
def skills_remove(name: str, url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """Delete a skill with all its versions."""
    GatewayClient(url, key).request("DELETE", f"/api/v1/skills/{name}")
    typer.echo(f"removed {name}")
