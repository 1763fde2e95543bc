"""What pillar 3 exposes to agents over MCP: a computer, through tools on ``/mcp``.

``SANDBOX_CREATE``, ``SANDBOX_EXEC``, ``SANDBOX_READ_FILE``, ``SANDBOX_WRITE_FILE``,
``SANDBOX_LIST_FILES``, ``SANDBOX_STOP`` and ``RUN_SKILL_SCRIPT``. Each takes an
optional ``sandbox_id``; without one it acts on the sandbox bound to the agent's
session, created on first use and resumed if stopped (session affinity). Every
call goes through :class:`SandboxService`, so ownership (another user's sandbox is
"not found"), permissions, quotas and the audit trail are the REST API's own.
Failures are tool errors (``isError``) carrying the REST error's code and message.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from mcp import types
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import SkipJsonSchema

from gateway.auth.principal import Principal
from gateway.errors import AppError, NotFound
from gateway.mcp.results import tool_error
from gateway.mcp.surface import SurfaceDefaults
from sandboxes.models import Sandbox
from sandboxes.providers.base import WORKSPACE, ExecResult
from sandboxes.schemas import ExecRequestIn, SandboxCreate
from sandboxes.service import SandboxService

SANDBOX_CREATE = "SANDBOX_CREATE"
SANDBOX_EXEC = "SANDBOX_EXEC"
SANDBOX_READ_FILE = "SANDBOX_READ_FILE"
SANDBOX_WRITE_FILE = "SANDBOX_WRITE_FILE"
SANDBOX_LIST_FILES = "SANDBOX_LIST_FILES"
SANDBOX_STOP = "SANDBOX_STOP"
RUN_SKILL_SCRIPT = "RUN_SKILL_SCRIPT"
SKILLS_DIR = "skills"  # where RUN_SKILL_SCRIPT copies a skill, inside the workspace
DIGEST_FILE = ".mcpgw-digest"  # in a copied skill's folder: which files it holds
# A skill's files as the skills pillar hands them out (SkillService.files):
# (name, {path: bytes}, executable paths).
SkillFiles = Callable[[Principal, str], Awaitable[tuple[str, dict[str, bytes], set[str]]]]

# By extension, when a script has no #! line.
INTERPRETERS = {
    ".py": ["python3"],
    ".js": ["node"],
    ".mjs": ["node"],
    ".cjs": ["node"],
    ".sh": ["bash"],
    ".bash": ["bash"],
}


def _sandbox_id() -> Any:
    return Field(
        None,
        max_length=64,
        description="One of your sandboxes. Default: this session's sandbox "
        "(created on first use, resumed if stopped).",
    )


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sandbox_id: str | None = _sandbox_id()


class CreateArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str = Field("python", max_length=64, description="python, node, multi, …")
    name: str = Field("", max_length=128, description="A label for humans.")


class ExecArgs(ExecRequestIn):
    sandbox_id: str | None = _sandbox_id()
    stream: SkipJsonSchema[bool] = False  # MCP results come whole


class PathArgs(_Target):
    path: str = Field(..., min_length=1, max_length=4096, description="Relative to /workspace.")


class WriteArgs(PathArgs):
    content: str = Field(..., description="The file's new content.")
    encoding: Literal["utf-8", "base64"] = Field(
        "utf-8", description="`base64` for binary content."
    )


class ListArgs(_Target):
    path: str = Field("", max_length=4096, description="A folder; default the workspace.")


class ScriptArgs(_Target):
    skill: str = Field(..., min_length=1, max_length=64, description="The skill's name.")
    script: str = Field(
        ...,
        min_length=1,
        max_length=1024,
        description="A file of the skill, e.g. `scripts/extract.py` (a bare name is "
        "looked for in `scripts/`).",
    )
    args: list[str] = Field(default_factory=list, description="Arguments to the script.")
    stdin: str | None = None
    timeout: float | None = Field(None, gt=0, le=86_400, description="Seconds.")


def _tool(name: str, model: type[BaseModel], description: str, **hints: bool) -> types.Tool:
    schema = model.model_json_schema()
    schema.pop("title", None)
    return types.Tool(
        name=name,
        description=description,
        input_schema=schema,
        annotations=types.ToolAnnotations(open_world_hint=False, **hints),
    )


# (tool, permission it needs, argument model)
TOOLS: dict[str, tuple[types.Tool, str, type[BaseModel]]] = {
    SANDBOX_CREATE: (
        _tool(
            SANDBOX_CREATE,
            CreateArgs,
            "Create a new sandbox: an isolated computer with a persistent /workspace "
            "(no network). Returns its id. You rarely need this: the other SANDBOX_* "
            "tools create this session's sandbox on first use.",
        ),
        "sandboxes:write",
        CreateArgs,
    ),
    SANDBOX_EXEC: (
        _tool(
            SANDBOX_EXEC,
            ExecArgs,
            "Run a shell command (`command`) or source code (`code` + `language`: python, "
            "node, bash, sh) in your sandbox, in /workspace by default. Returns stdout, "
            "stderr and the exit code. Files you write persist between calls.",
            destructive_hint=True,
        ),
        "sandboxes:execute",
        ExecArgs,
    ),
    SANDBOX_READ_FILE: (
        _tool(
            SANDBOX_READ_FILE,
            PathArgs,
            "Read a file of your sandbox's workspace (text, or base64 for binary files).",
            read_only_hint=True,
        ),
        "sandboxes:read",
        PathArgs,
    ),
    SANDBOX_WRITE_FILE: (
        _tool(
            SANDBOX_WRITE_FILE,
            WriteArgs,
            "Create or replace a file in your sandbox's workspace (folders are created).",
            destructive_hint=True,
        ),
        "sandboxes:write",
        WriteArgs,
    ),
    SANDBOX_LIST_FILES: (
        _tool(
            SANDBOX_LIST_FILES,
            ListArgs,
            "List a folder of your sandbox's workspace: name, type, size.",
            read_only_hint=True,
        ),
        "sandboxes:read",
        ListArgs,
    ),
    SANDBOX_STOP: (
        _tool(
            SANDBOX_STOP,
            _Target,
            "Stop your sandbox: frees its CPU and memory, keeps its files. The next "
            "SANDBOX_* call on it resumes it.",
            idempotent_hint=True,
        ),
        "sandboxes:write",
        _Target,
    ),
    RUN_SKILL_SCRIPT: (
        _tool(
            RUN_SKILL_SCRIPT,
            ScriptArgs,
            "Run a script bundled with a skill inside your sandbox. The skill's files "
            "are copied to /workspace/skills/<skill>/ first; the script runs in "
            "/workspace with SKILL_DIR set to that folder.",
            destructive_hint=True,
        ),
        "sandboxes:execute",
        ScriptArgs,
    ),
}


def _invalid(name: str, exc: ValidationError) -> types.CallToolResult:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
    )
    return tool_error(f"invalid arguments for {name}: {problems}")


def _result(text: str, data: dict[str, Any], *, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=data,
        is_error=error,
    )


def exec_summary(sandbox_id: str, result: ExecResult) -> types.CallToolResult:
    """An exec's outcome for an agent: a readable text and the same as data."""
    stdout = result.stdout.decode(errors="replace")
    stderr = result.stderr.decode(errors="replace")
    data: dict[str, Any] = {
        "sandbox_id": sandbox_id,
        "exit_code": result.exit_code,
        "stdout": stdout,
        "stderr": stderr,
        "duration_ms": round(result.duration_ms, 1),
        "timed_out": result.timed_out,
        "truncated": result.truncated,
        "oom_killed": result.oom_killed,
    }
    if result.timed_out:
        head = f"timed out after {result.duration_ms / 1000:.1f} s (killed)"
    elif result.exit_code is None:
        head = f"killed ({result.error or 'no exit code'})"
    else:
        head = f"exit code {result.exit_code}"
    if result.oom_killed:
        head += "; the memory limit killed a process"
    if result.truncated:
        head += "; output truncated"
    parts = [head]
    if stdout:
        parts.append(f"--- stdout ---\n{stdout}")
    if stderr:
        parts.append(f"--- stderr ---\n{stderr}")
    return _result("\n".join(parts), data)


class SandboxesMcp(SurfaceDefaults):
    """The sandboxes pillar's :class:`gateway.mcp.surface.Surface`: tools only."""

    generation = 0  # the tool list depends on permissions only
    listed_in_search_mode = False  # SEARCH_TOOLS finds them; the list stays two tools

    def __init__(self, service: SandboxService, skill_files: SkillFiles | None = None) -> None:
        self.service = service
        self.skill_files = skill_files
        self._lists: dict[tuple[bool, ...], list[types.Tool]] = {}

    @staticmethod
    def handles_tool(name: str) -> bool:
        return name in TOOLS

    def _allowed(self, principal: Principal) -> tuple[bool, ...]:
        skills = self.skill_files is not None and principal.can("skills:read")
        return tuple(
            principal.can(permission) and (name != RUN_SKILL_SCRIPT or skills)
            for name, (_, permission, _) in TOOLS.items()
        )

    async def tools(self, principal: Principal) -> list[types.Tool]:
        allowed = self._allowed(principal)
        listed = self._lists.get(allowed)
        if listed is None:
            listed = [tool for (tool, _, _), ok in zip(TOOLS.values(), allowed, strict=True) if ok]
            self._lists[allowed] = listed
        return listed

    async def call_tool(
        self,
        principal: Principal,
        name: str,
        arguments: dict[str, Any],
        session_key: str | None = None,
    ) -> types.CallToolResult:
        _, permission, model = TOOLS[name]
        if not principal.can(permission):
            return tool_error(f"this key may not use {name} (needs {permission!r})")
        if name == RUN_SKILL_SCRIPT and self.skill_files is None:
            return tool_error(f"{name} is not available here (no skills pillar)")
        try:
            args = model.model_validate(arguments)
        except ValidationError as exc:
            return _invalid(name, exc)
        try:
            return await self._run(principal, name, args, session_key)
        except AppError as exc:
            return tool_error(f"{exc.code}: {exc.message}")

    async def _sandbox(
        self, principal: Principal, args: BaseModel, session_key: str | None
    ) -> Sandbox:
        sandbox_id = getattr(args, "sandbox_id", None)
        if sandbox_id:
            row = await self.service.get(principal, sandbox_id)
            if row.status == "stopped":
                row = await self.service.resume(principal, row.id)
            return row
        return await self.service.for_session(principal, session_key or _fallback_key(principal))

    async def _run(
        self, principal: Principal, name: str, args: Any, session_key: str | None
    ) -> types.CallToolResult:
        service = self.service
        if name == SANDBOX_CREATE:
            key = session_key or _fallback_key(principal)
            bound = await service.bound(principal, key)
            row = await service.create(
                principal,
                SandboxCreate(template=args.template, name=args.name),
                session_key=None if bound else key,
            )
            return _result(
                f"created sandbox {row.id} ({row.template}, {row.provider})"
                + ("" if bound else "; it is this session's default sandbox"),
                {"sandbox_id": row.id, "status": row.status, "template": row.template},
            )
        if name == SANDBOX_STOP:
            if args.sandbox_id:
                row = await service.get(principal, args.sandbox_id)
            else:
                found = await service.bound(principal, session_key or _fallback_key(principal))
                if found is None:
                    return _result("this session has no sandbox", {"sandbox_id": None})
                row = found
            row = await service.stop(principal, row.id)
            return _result(f"sandbox {row.id} is {row.status}", {"sandbox_id": row.id})
        row = await self._sandbox(principal, args, session_key)
        if name == SANDBOX_EXEC:
            body = ExecRequestIn.model_validate(args.model_dump(exclude={"sandbox_id", "stream"}))
            return exec_summary(row.id, await service.exec(principal, row.id, body))
        if name == SANDBOX_READ_FILE:
            return await self._read(principal, row.id, args.path)
        if name == SANDBOX_WRITE_FILE:
            try:
                data = (
                    base64.b64decode(args.content, validate=True)
                    if args.encoding == "base64"
                    else args.content.encode()
                )
            except ValueError:
                return tool_error("content is not valid base64")
            path = await service.write_file(principal, row.id, args.path, data)
            return _result(
                f"wrote {len(data)} bytes to /workspace/{path}",
                {"sandbox_id": row.id, "path": path, "size": len(data)},
            )
        if name == SANDBOX_LIST_FILES:
            entries = await service.list_files(principal, row.id, args.path)
            if entries is None:
                return tool_error(f"{args.path} is a file: read it with {SANDBOX_READ_FILE}")
            listing = [
                {"name": e.name, "path": e.path, "type": e.type, "size": e.size} for e in entries
            ]
            text = "\n".join(
                f"{e.name}/" if e.type == "dir" else f"{e.name}  ({e.size} bytes)" for e in entries
            )
            return _result(text or "(empty folder)", {"sandbox_id": row.id, "entries": listing})
        return await self._script(principal, row, args)

    async def _read(self, principal: Principal, sandbox_id: str, path: str) -> types.CallToolResult:
        data = await self.service.read_file(principal, sandbox_id, path)
        try:
            text = data.decode()
        except UnicodeDecodeError:
            encoded = base64.b64encode(data).decode()
            return _result(
                f"{path}: {len(data)} bytes of binary data, base64 in structuredContent",
                {"sandbox_id": sandbox_id, "path": path, "encoding": "base64", "content": encoded},
            )
        return _result(
            text, {"sandbox_id": sandbox_id, "path": path, "encoding": "utf-8", "content": text}
        )

    async def _script(
        self, principal: Principal, row: Sandbox, args: ScriptArgs
    ) -> types.CallToolResult:
        assert self.skill_files is not None  # call_tool refused it otherwise
        skill, files, _ = await self.skill_files(principal, args.skill)
        script = args.script.removeprefix("./")
        if script not in files and f"scripts/{script}" in files:
            script = f"scripts/{script}"
        if script not in files:
            scripts = sorted(p for p in files if p.startswith("scripts/")) or sorted(files)
            raise NotFound(
                f"skill {skill!r} has no file {args.script!r} (it has: {', '.join(scripts)})",
                code="skill_script_not_found",
            )
        folder = f"{SKILLS_DIR}/{skill}"
        await self._copy_skill(principal, row.id, folder, files)
        interpreter = _interpreter(script, files[script])
        if interpreter is None:
            raise AppError(
                f"cannot tell how to run {script!r}: give it a #! line or a .py, .js or "
                ".sh extension",
                code="skill_script_unknown_kind",
            )
        skill_dir = f"{WORKSPACE}/{folder}"
        body = ExecRequestIn(
            command=[*interpreter, f"{skill_dir}/{script}", *args.args],
            env={"SKILL_DIR": skill_dir},
            stdin=args.stdin,
            timeout=args.timeout,
        )
        return exec_summary(row.id, await self.service.exec(principal, row.id, body))

    async def _copy_skill(
        self, principal: Principal, sandbox_id: str, folder: str, files: dict[str, bytes]
    ) -> None:
        """Write the skill's files into the workspace unless this very set is there."""
        digest = hashlib.sha256()
        for path in sorted(files):
            digest.update(f"{path}\0{hashlib.sha256(files[path]).hexdigest()}\n".encode())
        marker = f"{folder}/{DIGEST_FILE}"
        try:
            if (await self.service.read_file(principal, sandbox_id, marker)).decode() == (
                digest.hexdigest()
            ):
                return
        except (NotFound, UnicodeDecodeError):
            pass
        for path, data in files.items():
            await self.service.write_file(principal, sandbox_id, f"{folder}/{path}", data)
        await self.service.write_file(principal, sandbox_id, marker, digest.hexdigest().encode())


def _fallback_key(principal: Principal) -> str:
    """Without an MCP session (2026-07-28 is stateless): one sandbox per API key."""
    return f"key:{principal.key_id}" if principal.key_id else f"user:{principal.user_id}"


def _interpreter(path: str, data: bytes) -> list[str] | None:
    if data.startswith(b"#!"):
        line = data[2:].split(b"\n", 1)[0].decode(errors="replace").strip()
        if line:
            return shlex.split(line)
    suffix = path[path.rfind(".") :] if "." in path.rsplit("/", 1)[-1] else ""
    return INTERPRETERS.get(suffix.lower())
