"""The source grammar of ``npx skills add`` (the npm package ``skills``, 1.7.4), in Python.

``parse_source`` is pure: it turns what a user typed into a :class:`ParsedSource`
without touching the network or the disk. The rules, in the order the tool applies
them (``parseSource`` in its ``dist/cli.mjs``):

1. A local path: absolute, ``./``, ``../``, ``.``, ``..`` or ``C:\\``.
2. ``catalog:<id>``: a skills.sh catalog entry (this gateway's addition).
3. A ``#ref`` or ``#ref@skill`` fragment on anything that looks like a git source.
4. The tool's aliases; ``github:`` and ``gitlab:`` prefixes.
5. Hosted artifact URLs (raw.githubusercontent.com, ``/archive/``, releases): downloads.
6. URLs on the configured GitHub host (``MCPGW_SKILLS_GITHUB_BASE``, the tool's
   ``GH_HOST``): ``{base}/owner/repo[/tree/<ref>[/<path>]]``.
7. github.com URLs: ``/owner/repo``, ``/tree/<ref>``, ``/tree/<ref>/<path>``.
8. GitLab URLs on any host: ``/group/repo/-/tree/<ref>[/<path>]``; gitlab.com repos.
9. Azure Repos: ``…/_git/<repo>?path=/p&version=GB<branch>``.
10. ``owner/repo@skill``; ``owner/repo[/sub/path]``.
11. Other http(s) URLs not ending in ``.git``: the tool's "well-known" endpoint.
12. Anything else is handed to git as a URL.

Where the tool would hand nonsense to git, this module refuses it with a message
instead (bad owner/repo characters, ``..`` in a path, git's ``<transport>::`` syntax,
a leading ``-``, unknown URL schemes). Small differences, on purpose: a ``#ref@skill``
fragment keeps its skill on URL forms too (the tool drops it there), and ``file://``
URLs ending in ``.git`` take fragments like http(s) ones. What the gateway does with
``well-known`` and ``download`` sources is up to :func:`skills.sources.resolve_source`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

from skills.sources.errors import SourceError

SourceType = Literal["github", "gitlab", "git", "local", "catalog", "download", "well-known"]

DEFAULT_GITHUB_BASE = "https://github.com"
CATALOG_PREFIX = "catalog:"
MAX_SOURCE_CHARS = 2048

# The tool's SOURCE_ALIASES: repositories that moved.
SOURCE_ALIASES = {
    "coinbase/agentWallet": "coinbase/agentic-wallet-skills",
    "vercel-labs/vercel-skills": "vercel-labs/agent-skills",
}
# GitHub's own rules are stricter; this only keeps URL-breaking characters out.
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_REMOTE_HELPER = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[^/:]+:.+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GIT_URL_SCHEMES = ("http://", "https://", "ssh://", "git://", "file://")


@dataclass(frozen=True)
class ParsedSource:
    """What a source text names; ``url`` is the clone URL (a path for ``local``)."""

    type: SourceType
    url: str
    ref: str | None = None
    subpath: str | None = None
    skill_filter: str | None = None
    catalog_id: str | None = None

    @property
    def is_remote_git(self) -> bool:
        return self.type in {"github", "gitlab", "git", "well-known"}


def _fail(text: str, why: str) -> SourceError:
    return SourceError(
        f"invalid skill source {text!r}: {why}. Use owner/repo, owner/repo/sub/path, "
        "owner/repo@skill, a repository or tree URL, a git URL, a local path or catalog:<id>"
    )


def is_local_path(text: str) -> bool:
    """The tool's ``isLocalPath`` (POSIX absolute paths, relative prefixes, drive letters)."""
    return (
        text.startswith("/")
        or text.startswith("./")
        or text.startswith("../")
        or text in {".", ".."}
        or re.match(r"^[a-zA-Z]:[/\\]", text) is not None
    )


def sanitize_subpath(text: str, subpath: str) -> str:
    """Refuse ``..`` segments (the tool's ``sanitizeSubpath``); drop empty segments."""
    segments = subpath.replace("\\", "/").split("/")
    if ".." in segments:
        raise _fail(text, f"the path {subpath!r} contains '..'")
    return "/".join(s for s in segments if s not in {"", "."})


def _check_name(text: str, what: str, value: str) -> str:
    if not _NAME.match(value) or value in {".", ".."}:
        raise _fail(text, f"{what} {value!r} may only hold letters, digits, '-', '_' and '.'")
    return value


def _looks_like_git_source(text: str, base: str) -> bool:
    """The tool's ``looksLikeGitSource``: decides whether ``#...`` is a ref fragment."""
    if text.startswith(("github:", "gitlab:", "git@")):
        return True
    if re.match(r"^ssh://.+\.git(?:$|[/?])", text, re.I):
        return True
    if text.startswith(("http://", "https://")):
        parts, b = urlsplit(text), urlsplit(base)
        host, path = parts.netloc.lower(), parts.path
        prefix = b.path.rstrip("/")
        if host == b.netloc.lower() and prefix and path.startswith(prefix + "/"):
            path = path[len(prefix) :]
        if host in {"github.com", b.netloc.lower()}:
            return re.match(r"^/[^/]+/[^/]+(?:\.git)?(?:/tree/[^/]+(?:/.*)?)?/?$", path) is not None
        if parts.hostname == "gitlab.com":
            return (
                re.match(r"^/.+?/[^/]+(?:\.git)?(?:/-/tree/[^/]+(?:/.*)?)?/?$", parts.path)
                is not None
            )
        segments = [s for s in parts.path.split("/") if s]
        if "_git" in segments and segments.index("_git") < len(segments) - 1:
            return True
    # The tool knows http(s) here; file:// repositories take fragments the same way.
    if re.match(r"^(?:https?|file)://.+\.git(?:$|[/?])", text, re.I):
        return True
    return (
        ":" not in text
        and not text.startswith((".", "/"))
        and re.match(r"^([^/]+)/([^/]+)(?:/(.+)|@(.+))?$", text) is not None
    )


def _split_fragment(text: str, base: str) -> tuple[str, str | None, str | None]:
    """``input#ref@skill`` → (input, ref, skill), only when ``input`` is a git source."""
    head, sep, fragment = text.partition("#")
    if not sep or not fragment or not _looks_like_git_source(head, base):
        return text, None, None
    ref, at, skill = fragment.partition("@")
    return head, unquote(ref) or None, (unquote(skill) or None) if at else None


def _is_hosted_artifact(text: str) -> bool:
    """The tool's ``isHostedArtifactUrl``: archives and raw files, not repositories."""
    if not text.startswith(("http://", "https://")):
        return False
    parts = urlsplit(text)
    host = (parts.hostname or "").lower()
    if host in {
        "raw.githubusercontent.com",
        "codeload.github.com",
        "objects.githubusercontent.com",
    }:
        return True
    if host == "github.com":
        pattern = r"^/[^/]+/[^/]+/(?:archive/|raw/|releases/(?:download/|latest/download/))"
        return re.match(pattern, parts.path) is not None
    if host == "gitlab.com":
        return re.search(r"/-/(?:archive|raw)/", parts.path) is not None
    return False


def _github(
    text: str,
    base: str,
    owner: str,
    repo: str,
    *,
    ref: str | None = None,
    subpath: str | None = None,
    skill_filter: str | None = None,
) -> ParsedSource:
    owner = _check_name(text, "owner", owner)
    repo = _check_name(text, "repository", repo.removesuffix(".git"))
    return ParsedSource(
        type="github",
        url=f"{base}/{owner}/{repo}.git",
        ref=ref,
        subpath=(sanitize_subpath(text, subpath) or None) if subpath else None,
        skill_filter=skill_filter,
    )


def _on_github_base(
    text: str, base: str, ref: str | None, skill: str | None
) -> ParsedSource | None:
    """``{base}/owner/repo[.git][/tree/<ref>[/<path>]]`` on a configured non-github.com base."""
    if not text.startswith(("http://", "https://")):
        return None
    b, t = urlsplit(base), urlsplit(text)
    if (t.scheme, t.netloc.lower()) != (b.scheme, b.netloc.lower()):
        return None
    prefix = b.path.rstrip("/")
    if prefix and not (t.path == prefix or t.path.startswith(prefix + "/")):
        return None
    segments = [s for s in t.path[len(prefix) :].split("/") if s]
    if len(segments) < 2:
        return None
    owner, repo, *rest = segments
    if len(rest) >= 2 and rest[0] == "tree":
        subpath = "/".join(rest[2:]) or None
        return _github(text, base, owner, repo, ref=rest[1], subpath=subpath, skill_filter=skill)
    return _github(text, base, owner, repo, ref=ref, skill_filter=skill)


def _azure(text: str, ref: str | None, skill: str | None) -> ParsedSource | None:
    """Azure Repos: ``https://dev.azure.com/org/project/_git/repo?path=/p&version=GBmain``."""
    if not text.startswith(("http://", "https://")):
        return None
    parts = urlsplit(text)
    segments = [s for s in parts.path.split("/") if s]
    if "_git" not in segments:
        return None
    index = segments.index("_git")
    if index == len(segments) - 1:
        return None
    repo = segments[index + 1].removesuffix(".git")
    if not repo:
        return None
    path = "/".join(quote(unquote(s), safe="") for s in [*segments[:index], "_git", repo])
    query = parse_qs(parts.query)
    version = (query.get("version") or [""])[0]
    match = re.match(r"^(?:GB|GT)(.+)$", version, re.I)
    path_param = (query.get("path") or [""])[0].lstrip("/")
    return ParsedSource(
        type="git",
        url=f"{parts.scheme}://{parts.netloc}/{path}",
        ref=(match.group(1) if match else None) or ref,
        subpath=sanitize_subpath(text, path_param) or None if path_param else None,
        skill_filter=skill,
    )


def _plain_git(text: str, ref: str | None, skill: str | None) -> ParsedSource:
    if text.startswith("-"):
        raise _fail(text, "a source cannot start with '-'")
    if not (text.startswith(_GIT_URL_SCHEMES) or _SCP_LIKE.match(text)):
        raise _fail(text, "it is neither a path, owner/repo, nor a git URL")
    parts = urlsplit(text) if "://" in text else None
    if parts is not None and parts.scheme != "file" and not parts.hostname:
        raise _fail(text, "the URL has no host")
    return ParsedSource(type="git", url=text, ref=ref, skill_filter=skill)


def parse_source(text: str, *, github_base: str = DEFAULT_GITHUB_BASE) -> ParsedSource:
    """Parse a skill source the way ``npx skills add`` does (see the module docstring).

    ``github_base`` is where ``owner/repo`` lives (``MCPGW_SKILLS_GITHUB_BASE``); URLs
    on that host are read like github.com URLs. Raises :class:`SourceError` with a
    message naming the problem for input the tool could not use either.
    """
    text = text.strip()
    if not text:
        raise SourceError("the skill source is empty")
    if len(text) > MAX_SOURCE_CHARS:
        raise SourceError(f"the skill source is longer than {MAX_SOURCE_CHARS} characters")
    if _CONTROL.search(text):
        raise _fail(text, "it contains control characters")
    if text.startswith("-"):
        # Whatever the form, a leading '-' would reach git as an option.
        raise _fail(text, "a source cannot start with '-'")
    base = github_base.rstrip("/")
    github_host = urlsplit(base).netloc.lower()

    if is_local_path(text):
        path = os.path.normpath(os.path.abspath(text))
        return ParsedSource(type="local", url=path)
    if text.startswith(CATALOG_PREFIX):
        entry = text[len(CATALOG_PREFIX) :].strip().strip("/")
        if not entry or ".." in entry.split("/"):
            raise _fail(text, "catalog:<id> needs the catalog id, e.g. catalog:owner/repo/skill")
        return ParsedSource(type="catalog", url=entry, catalog_id=entry)
    if _REMOTE_HELPER.match(text):
        # git runs `git-remote-<transport>` for `<transport>::<address>`; `ext::` runs any
        # command. The tool refuses `ext::`; no transport of this form is needed here.
        raise _fail(text, "git remote-helper transports ('<transport>::') are not allowed")

    text, ref, skill = _split_fragment(text, base)
    text = SOURCE_ALIASES.get(text, text)
    if text.startswith("github:"):
        return parse_source(_append_fragment(text[7:], ref, skill), github_base=github_base)
    if text.startswith("gitlab:"):
        inner = f"https://gitlab.com/{text[7:]}"
        return parse_source(_append_fragment(inner, ref, skill), github_base=github_base)
    if _is_hosted_artifact(text):
        return ParsedSource(type="download", url=text)

    if github_host != "github.com":
        on_base = _on_github_base(text, base, ref, skill)
        if on_base is not None:
            return on_base

    gh = "https://github.com"
    if m := re.search(r"github\.com/([^/]+)/([^/]+)/tree/([^/]+)/(.+)", text):
        return _github(text, gh, m[1], m[2], ref=m[3] or ref, subpath=m[4], skill_filter=skill)
    if m := re.search(r"github\.com/([^/]+)/([^/]+)/tree/([^/]+)$", text):
        return _github(text, gh, m[1], m[2], ref=m[3] or ref, skill_filter=skill)
    if m := re.search(r"github\.com/([^/]+)/([^/]+)", text):
        return _github(
            text, gh, m[1], m[2].split("#")[0].split("?")[0], ref=ref, skill_filter=skill
        )

    m = re.match(r"^(https?)://([^/]+)/(.+?)/-/tree/([^/]+)/(.+)", text)
    if m and m[2] != "github.com":
        return ParsedSource(
            type="gitlab",
            url=f"{m[1]}://{m[2]}/{m[3].removesuffix('.git')}.git",
            ref=m[4] or ref,
            skill_filter=skill,
            subpath=sanitize_subpath(text, m[5]) or None,
        )
    m = re.match(r"^(https?)://([^/]+)/(.+?)/-/tree/([^/]+)$", text)
    if m and m[2] != "github.com":
        url = f"{m[1]}://{m[2]}/{m[3].removesuffix('.git')}.git"
        return ParsedSource(type="gitlab", url=url, ref=m[4] or ref, skill_filter=skill)
    if (m := re.search(r"gitlab\.com/(.+?)(?:\.git)?/?$", text)) and "/" in m[1]:
        return ParsedSource(
            type="gitlab", url=f"https://gitlab.com/{m[1]}.git", ref=ref, skill_filter=skill
        )

    azure = _azure(text, ref, skill)
    if azure is not None:
        return azure

    shorthand_ok = ":" not in text and not text.startswith((".", "/"))
    if shorthand_ok and (m := re.match(r"^([^/]+)/([^/@]+)@(.+)$", text)):
        return _github(text, base, m[1], m[2], ref=ref, skill_filter=skill or m[3])
    if shorthand_ok and (m := re.match(r"^([^/]+)/([^/]+)(?:/(.+?))?/?$", text)):
        return _github(text, base, m[1], m[2], ref=ref, subpath=m[3], skill_filter=skill)

    if text.startswith(("http://", "https://")) and not text.endswith(".git"):
        host = (urlsplit(text).hostname or "").lower()
        if host not in {"github.com", "gitlab.com", "raw.githubusercontent.com"}:
            if not host:
                raise _fail(text, "the URL has no host")
            return ParsedSource(type="well-known", url=text, ref=ref, skill_filter=skill)
    return _plain_git(text, ref, skill)


def _append_fragment(text: str, ref: str | None, skill: str | None) -> str:
    if not ref:
        return text
    return f"{text}#{ref}@{skill}" if skill else f"{text}#{ref}"
