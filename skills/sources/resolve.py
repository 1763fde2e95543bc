"""``resolve_source``: from a source text to a checked-out folder and the skills in it."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from gateway.config import Settings
from skills.sources.catalog import CatalogEntry, lookup_catalog
from skills.sources.discovery import DiscoveredSkill, discover_skills
from skills.sources.errors import (
    SkillNotFound,
    SourceError,
    SourceNotFound,
    strip_credentials,
)
from skills.sources.git import Git, GitFailed, clone, guard_url, head_commit
from skills.sources.grammar import ParsedSource, parse_source

TEMP_PREFIX = "mcpgw-skill-source-"
# What `git check-ref-format` refuses, plus a leading '-' (it would read as an option).
_BAD_REF = re.compile(r"^-|\.\.|@\{|[\x00-\x20\x7f~^:?*\[\\]|^/|/$|\.lock$|^@$")
_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._-]+@)?(?P<host>[^/:]+):(?P<path>.+)$")


class LocalImportDisabled(SourceError):
    """Local paths and file:// URLs are off (``MCPGW_SKILLS_ALLOW_LOCAL_IMPORT``)."""

    status_code = 403
    code = "local_import_disabled"


@dataclass
class FetchedSource:
    """A source made readable on disk for the length of a ``resolve_source`` block.

    ``kind`` is ``git``, ``local`` or ``catalog``; ``url`` the repository URL without
    credentials (the absolute path for ``local``); ``commit`` the pinned commit (None
    for a local folder outside git); ``ref`` the branch, tag or commit asked for (None:
    the default branch); ``skills`` what discovery found, filtered to the requested
    skill when one was named; ``checkout`` the folder searched (read-only for a
    local source: never write to it).
    """

    kind: Literal["git", "local", "catalog"]
    url: str
    commit: str | None
    ref: str | None
    skills: list[DiscoveredSkill]
    source: str
    parsed: ParsedSource
    checkout: Path
    subpath: str | None = None
    catalog_entry: CatalogEntry | None = None
    skipped: list[str] = field(default_factory=list)


def _merge(what: str, given: str | None, parsed: str | None) -> str | None:
    if given is not None and not given.strip():
        given = None
    if given and parsed and given.lower() != parsed.lower():
        raise SourceError(f"the source names {what} {parsed!r} but {given!r} was asked for")
    return given.strip() if given else parsed


def _fetch_url(parsed: ParsedSource, settings: Settings) -> tuple[str, bool]:
    """The URL git fetches and whether it is a local ``file://`` one.

    The gateway holds no SSH keys (and must not lend its own to a stranger's
    repository), so ``git@host:path`` and ``ssh://`` sources are fetched anonymously
    over HTTPS from the same host and path; ``git://`` is refused.
    """
    url = parsed.url
    if url.startswith("file://"):
        if not settings.skills_allow_local_import:
            raise LocalImportDisabled(_LOCAL_OFF)
        return url, True
    if url.startswith("ssh://"):
        parts = urlsplit(url)
        return f"https://{parts.hostname}{parts.path}", False
    if url.startswith("git://"):
        raise SourceError(
            "git:// sources are not supported; use the repository's https:// URL",
            code="unsupported_source",
        )
    if (m := _SCP_LIKE.match(url)) and "://" not in url:
        return f"https://{m['host']}/{m['path'].lstrip('/')}", False
    return url, False


_LOCAL_OFF = (
    "importing from a path on the gateway's disk is disabled; "
    "set MCPGW_SKILLS_ALLOW_LOCAL_IMPORT=true (CLI or single-user installs) or upload the skill"
)


def _select(
    skills: list[DiscoveredSkill], wanted: str | None, folder_hint: str | None, where: str
) -> list[DiscoveredSkill]:
    """The tool's ``filterSkills`` (name, case-insensitive); a catalog entry whose
    catalog name differs from its SKILL.md name is also found by its folder name."""
    if wanted is None:
        return skills
    chosen = [s for s in skills if s.name.lower() == wanted.lower()]
    if not chosen and folder_hint:
        chosen = [s for s in skills if s.root.name.lower() == folder_hint.lower()]
    if not chosen:
        names = ", ".join(sorted(s.name for s in skills)[:20])
        raise SkillNotFound(f"{where} has no skill named {wanted!r}; it has: {names}")
    return chosen[:1]


def _no_skills(where: str, skipped: list[str]) -> SourceError:
    detail = f" Skipped: {'; '.join(skipped[:5])}." if skipped else ""
    return SourceError(
        f"no valid skills found in {where}: a skill is a folder with a SKILL.md whose "
        f"front matter has a name and a description.{detail}",
        code="no_skills_found",
    )


async def _cleanup(folder: Path) -> None:
    # Shielded: a cancelled import still removes its clone (the thread runs to the end).
    await asyncio.shield(asyncio.to_thread(shutil.rmtree, folder, True))


@asynccontextmanager
async def resolve_source(
    source: str,
    *,
    settings: Settings,
    skill: str | None = None,
    ref: str | None = None,
    full_depth: bool = False,
) -> AsyncIterator[FetchedSource]:
    """Fetch ``source`` (the ``npx skills`` grammar, or ``catalog:<id>``) and find its skills.

    ``skill`` and ``ref`` add what the source text may also say (``@skill``, ``#ref``,
    a tree URL); saying two different things is an error. Remote URLs pass the SSRF
    guard unless ``MCPGW_ALLOW_PRIVATE_URLS`` is on; local paths need
    ``MCPGW_SKILLS_ALLOW_LOCAL_IMPORT``. Temporary clones are deleted when the block
    ends, also on error. Raises :class:`SourceError` (422) and its 404/403/502 kinds.
    """
    parsed = parse_source(source, github_base=settings.skills_github_base)
    wanted = _merge("skill", skill, parsed.skill_filter)
    entry: CatalogEntry | None = None
    target = parsed
    if parsed.type == "catalog":
        entry = await lookup_catalog(parsed.catalog_id or "", settings)
        target = parse_source(entry.source or entry.id, github_base=settings.skills_github_base)
        if target.type in {"catalog", "local"} or (target.url.startswith("file://")):
            raise SourceError(f"catalog entry {entry.id!r} names an unusable source")
        wanted = _merge("skill", wanted, entry.name)
    ref = _merge("ref", ref, target.ref)
    if ref is not None and _BAD_REF.search(ref):
        raise SourceError(f"{ref!r} is not a valid git branch, tag or commit name")
    folder_hint = entry.skill_id if entry is not None else None
    if target.type == "download":
        raise SourceError(
            "direct download URLs (archives, raw files) are not imported by URL; "
            "download the file and upload it instead",
            code="unsupported_source",
        )

    tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    try:
        (tmp / "home").mkdir()
        if target.type == "local":
            fetched = await _local(target, settings, tmp, ref)
        else:
            fetched = await _remote(target, settings, tmp, ref)
        fetched.source = source
        fetched.parsed = parsed
        if entry is not None:
            fetched.kind = "catalog"
            fetched.catalog_entry = entry
        where = f"{fetched.url}" + (f" ({fetched.subpath})" if fetched.subpath else "")
        skipped: list[str] = []
        found = await asyncio.to_thread(
            discover_skills,
            fetched.checkout,
            fetched.subpath,
            include_internal=wanted is not None,
            full_depth=full_depth,
            skipped=skipped,
        )
        fetched.skipped = skipped
        if not found:
            raise _no_skills(where, skipped)
        fetched.skills = _select(found, wanted, folder_hint, where)
        yield fetched
    finally:
        await _cleanup(tmp)


async def _local(
    parsed: ParsedSource, settings: Settings, tmp: Path, ref: str | None
) -> FetchedSource:
    if not settings.skills_allow_local_import:
        raise LocalImportDisabled(_LOCAL_OFF)
    path = Path(parsed.url)
    if not await asyncio.to_thread(path.is_dir):
        raise SourceNotFound(f"local path {parsed.url} does not exist or is not a folder")
    git = Git(
        home=tmp / "home",
        timeout=settings.skills_git_timeout_seconds,
        max_bytes=settings.skills_max_source_bytes,
        allow_file=True,
    )
    if ref is None:
        commit = await head_commit(git, path)
        return _fetched("local", parsed.url, commit, None, path, None)
    # A ref of a local repository: check that commit out into a temporary clone.
    try:
        top = Path((await git.run("rev-parse", "--show-toplevel", cwd=path)).strip())
    except GitFailed:
        raise SourceError(f"{parsed.url} is not in a git repository, so it has no ref") from None
    top_url, subpath = await asyncio.to_thread(_within, path, top)
    dest = tmp / "checkout"
    commit = await clone(git, top_url, dest, ref=ref, subpath=subpath)
    _require_subpath(dest, subpath, parsed.url, commit)
    return _fetched("local", parsed.url, commit, ref, dest, subpath)


def _within(path: Path, top: Path) -> tuple[str, str | None]:
    """``top`` as a file:// URL and ``path`` relative to it (None when the same)."""
    rel = os.path.relpath(path.resolve(), top.resolve()).replace(os.sep, "/")
    return top.resolve().as_uri(), (None if rel == "." else rel)


async def _remote(
    parsed: ParsedSource, settings: Settings, tmp: Path, ref: str | None
) -> FetchedSource:
    url, is_file = _fetch_url(parsed, settings)
    pin = [] if is_file else await guard_url(url, allow_private=settings.allow_private_urls)
    git = Git(
        home=tmp / "home",
        timeout=settings.skills_git_timeout_seconds,
        max_bytes=settings.skills_max_source_bytes,
        allow_file=is_file,
        extra_config=pin,
    )
    dest = tmp / "checkout"
    commit = await clone(git, url, dest, ref=ref, subpath=parsed.subpath)
    shown = strip_credentials(url)
    _require_subpath(dest, parsed.subpath, shown, commit)
    return _fetched("git", shown, commit, ref, dest, parsed.subpath)


def _require_subpath(dest: Path, subpath: str | None, where: str, commit: str) -> None:
    if subpath and not (dest / subpath).is_dir():
        raise SourceNotFound(
            f"path {subpath!r} not found in {where} at commit {commit[:12]}",
            code="path_not_found",
        )


def _fetched(
    kind: Literal["git", "local"],
    url: str,
    commit: str | None,
    ref: str | None,
    checkout: Path,
    subpath: str | None,
) -> FetchedSource:
    placeholder = ParsedSource(type="local", url=url)
    return FetchedSource(
        kind=kind,
        url=url,
        commit=commit,
        ref=ref,
        skills=[],
        source="",
        parsed=placeholder,
        checkout=checkout,
        subpath=subpath,
    )
