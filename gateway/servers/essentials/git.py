"""Essentials: git — read-only log, show, diff, blame and grep over allowed repositories.

Only repositories under the configured roots (``MCPGW_GIT_ROOTS``) are reachable.
Commands run with settings that stop a repository's own config from running
programs (fsmonitor, hooks, external diff, textconv, signature checks) and refuse
option-like refs. git runs with a fixed environment and no global or system
config: ``HOME`` is an empty folder, never the repository, whose tracked
``.gitconfig`` would otherwise be read as the user's own settings.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

server = MCPServer(
    "git",
    instructions="Read-only git: list repositories, then log/show/diff/blame/grep inside one.",
)

READ_ONLY = ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False)
ROOTS: list[Path] = []  # set by the gateway from MCPGW_GIT_ROOTS at start-up
MAX_OUTPUT = 200_000
TIMEOUT = 20.0
SAFE_CONFIG = [
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.pager=cat",
    "-c",
    "protocol.allow=never",
    "-c",
    "diff.external=",
    "-c",
    "safe.directory=*",
    "-c",
    "log.showSignature=false",
    "-c",
    "blame.ignoreRevsFile=",
]
# A HOME that does not exist: no ~/.gitconfig, no ~/.config/git to read.
_EMPTY_HOME = "/nonexistent"


def configure(roots: list[Path]) -> None:
    ROOTS[:] = [r.resolve() for r in roots]


def _repository(repo: str) -> Path:
    if not ROOTS:
        raise ToolError("no repositories are shared: the admin has not set MCPGW_GIT_ROOTS")
    candidates = [Path(repo)] if os.path.isabs(repo) else [root / repo for root in ROOTS]
    for candidate in candidates:
        path = candidate.resolve()
        inside = any(path == root or root in path.parents for root in ROOTS)
        if inside and ((path / ".git").exists() or (path / "HEAD").is_file()):
            return path
    raise ToolError(f"{repo!r} is not a git repository under the shared roots")


def _ref(value: str, what: str) -> str:
    if not value or value.startswith("-") or any(c in value for c in "\x00\n\r "):
        raise ToolError(f"invalid {what} {value!r}")
    return value


def _path(value: str) -> str:
    if (
        value.startswith("-")
        or "\x00" in value
        or os.path.isabs(value)
        or ".." in Path(value).parts
    ):
        raise ToolError(f"invalid path {value!r}: give a path relative to the repository")
    return value


async def _git(repo: Path, *args: str) -> str:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "HOME": _EMPTY_HOME,
        "LC_ALL": "C",
    }
    process = await asyncio.create_subprocess_exec(
        "git",
        *SAFE_CONFIG,
        "-C",
        str(repo),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    except TimeoutError:
        process.kill()
        raise ToolError(f"git {args[0]} took longer than {TIMEOUT:g}s") from None
    if process.returncode not in (0, 1) or (process.returncode == 1 and args[0] != "grep"):
        message = err.decode(errors="replace").strip().splitlines()
        raise ToolError(f"git {args[0]} failed: {message[-1] if message else process.returncode}")
    text = out.decode(errors="replace")
    if len(text) > MAX_OUTPUT:
        text = text[:MAX_OUTPUT] + f"\n… [truncated at {MAX_OUTPUT} characters]"
    return text


@server.tool(annotations=READ_ONLY)
def list_repositories() -> list[str]:
    """Git repositories available to read (relative to the shared roots)."""
    found = []
    for root in ROOTS:
        if (root / ".git").exists():
            found.append(str(root))
        for child in sorted(root.iterdir()) if root.is_dir() else []:
            if (child / ".git").exists() or (
                (child / "HEAD").is_file() and (child / "objects").is_dir()
            ):
                found.append(str(child.relative_to(root)))
    return found


@server.tool(annotations=READ_ONLY)
async def log(
    repo: str,
    max_count: Annotated[int, Field(ge=1, le=500)] = 20,
    rev: str = "HEAD",
    path: str | None = None,
) -> str:
    """Commit history: hash, author, date and subject, newest first."""
    args = [
        "log",
        f"--max-count={max_count}",
        "--date=iso-strict",
        "--format=%H%x09%an <%ae>%x09%ad%x09%s",
        _ref(rev, "revision"),
        "--",
    ]
    return await _git(_repository(repo), *args, *([_path(path)] if path else []))


@server.tool(annotations=READ_ONLY)
async def show(repo: str, rev: str = "HEAD", path: str | None = None) -> str:
    """A commit with its patch, or a file's content at a revision when path is given."""
    repository = _repository(repo)
    if path:
        spec = f"{_ref(rev, 'revision')}:{_path(path)}"
        return await _git(repository, "show", "--no-textconv", spec)
    return await _git(
        repository,
        "show",
        "--no-ext-diff",
        "--no-textconv",
        "--stat",
        "--patch",
        _ref(rev, "revision"),
        "--",
    )


@server.tool(annotations=READ_ONLY)
async def diff(repo: str, base: str, head: str = "HEAD", path: str | None = None) -> str:
    """Unified diff between two revisions (optionally limited to a path)."""
    args = ["diff", "--no-ext-diff", "--no-textconv", _ref(base, "base"), _ref(head, "head"), "--"]
    return await _git(_repository(repo), *args, *([_path(path)] if path else []))


@server.tool(annotations=READ_ONLY)
async def blame(repo: str, path: str, rev: str = "HEAD") -> str:
    """Who last changed each line of a file."""
    return await _git(
        _repository(repo),
        "blame",
        "--no-textconv",  # on by default for blame: a driver from config would run
        "--date=short",
        _ref(rev, "revision"),
        "--",
        _path(path),
    )


@server.tool(annotations=READ_ONLY)
async def grep(
    repo: str,
    pattern: Annotated[str, Field(min_length=1, max_length=500)],
    rev: str = "HEAD",
    ignore_case: bool = False,
) -> str:
    """Lines matching a regular expression in the files of a revision (path:line:text)."""
    args = [
        "grep",
        "-n",
        "-I",
        "--no-color",
        *(["-i"] if ignore_case else []),
        "-e",
        pattern,
        _ref(rev, "revision"),
        "--",
    ]
    return await _git(_repository(repo), *args)
