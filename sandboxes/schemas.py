"""Request and response shapes of ``/api/v1/sandboxes``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.audit.schemas import AuditItem

Provider = Literal["local", "docker", "kubernetes", "agent-sandbox"]
Network = Literal["none", "egress"]
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


class LimitsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpus: float | None = Field(None, gt=0, le=64)
    memory_mb: int | None = Field(None, ge=16, le=1_048_576)
    pids: int | None = Field(None, ge=8, le=100_000)
    disk_mb: int | None = Field(None, ge=1)


class LimitsOut(BaseModel):
    cpus: float
    memory_mb: int
    pids: int
    disk_mb: int


class SandboxCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str = Field(
        "python", max_length=64, description="python, node, multi or an admin-defined template."
    )
    provider: Provider | None = Field(None, description="Default: MCPGW_SANDBOX_PROVIDER.")
    name: str = Field("", max_length=128)
    limits: LimitsIn | None = Field(
        None, description="Lower than the defaults for anyone; higher for admins only."
    )
    network: Network = Field("none", description="`egress` needs MCPGW_SANDBOX_ALLOW_NETWORK.")
    team_id: str | None = Field(
        None,
        max_length=36,
        description="The team it counts against (its max_sandboxes quota). Default: the "
        "creator's team when they are in exactly one; none when in none.",
    )


class UsageOut(BaseModel):
    cpu_seconds: float | None = Field(None, description="CPU time used (all time).")
    memory_bytes: int | None = None
    memory_peak_bytes: int | None = None
    disk_bytes: int | None = None
    processes: int | None = None
    exec_count: int = 0


class SandboxOut(BaseModel):
    id: str
    name: str
    owner_id: str | None
    team_id: str | None = None
    template: str
    image: str | None
    provider: str
    status: str
    error: str | None
    limits: LimitsOut
    network: str
    session_key: str | None
    created_at: datetime
    updated_at: datetime
    last_activity_at: datetime
    stopped_at: datetime | None
    destroyed_at: datetime | None
    usage: UsageOut


class ExecRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: str | list[str] | None = Field(
        None,
        description="A shell command line (run by /bin/sh -c) or an argv list.",
    )
    code: str | None = Field(None, description="Source code to run with `language`.")
    language: str | None = Field(None, description="python, node, javascript, bash or sh.")
    cwd: str | None = Field(None, max_length=4096, description="Default /workspace.")
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, str] = Field(
        default_factory=dict,
        description="More variables, whose values are never logged or audited.",
    )
    secret: list[str] = Field(
        default_factory=list, description="Names in `env` whose values are secret."
    )
    stdin: str | None = Field(None, description="Text fed to the command's standard input.")
    timeout: float | None = Field(None, gt=0, le=86_400, description="Seconds.")
    stream: bool = Field(False, description="Stream output as server-sent events.")

    @model_validator(mode="after")
    def _one_of(self) -> ExecRequestIn:
        if (self.command is None) == (self.code is None):
            raise ValueError("give either `command` or `code` (with `language`)")
        if self.code is not None and not self.language:
            raise ValueError("`code` needs a `language`")
        if isinstance(self.command, list) and not self.command:
            raise ValueError("`command` must not be an empty list")
        return self


class ExecResultOut(BaseModel):
    stdout: str
    stderr: str
    exit_code: int | None
    duration_ms: float
    timed_out: bool
    truncated: bool = False
    oom_killed: bool = False
    error: str | None = None


class FileEntryOut(BaseModel):
    name: str
    path: str
    type: str
    size: int
    modified: float | None = None


class DirectoryOut(BaseModel):
    path: str
    entries: list[FileEntryOut]


class FileWritten(BaseModel):
    path: str
    size: int


class BulkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["stop", "resume", "destroy"]
    ids: list[str] = Field(min_length=1, max_length=1000)


class BulkItem(BaseModel):
    id: str
    ok: bool
    status: str | None = None
    error: str | None = None


class BulkResult(BaseModel):
    action: str
    results: list[BulkItem]


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field("", max_length=2000)
    image: str | None = Field(None, max_length=255, description="Docker image (docker).")
    languages: list[str] = Field(default_factory=lambda: ["python", "bash", "sh"])
    env: dict[str, str] = Field(default_factory=dict)
    limits: LimitsIn | None = None


class TemplateOut(BaseModel):
    name: str
    description: str
    image: str | None
    languages: list[str]
    env: dict[str, str]
    limits: dict[str, Any]
    builtin: bool


class EventOut(BaseModel):
    """A sandbox's row of the audit trail (`GET /api/v1/audit?target=<id>` has them all)."""

    id: str
    sandbox_id: str
    user_id: str | None
    action: str
    command: str | None
    path: str | None
    exit_code: int | None
    duration_ms: float | None
    detail: dict[str, Any]
    at: datetime

    @classmethod
    def of(cls, item: AuditItem) -> EventOut:
        args = item.arguments if isinstance(item.arguments, dict) else {}
        detail = dict(item.detail) if isinstance(item.detail, dict) else {}
        exit_code = detail.pop("exit_code", None)
        return cls(
            id=item.id,
            sandbox_id=item.target or "",
            user_id=item.actor.user_id,
            action=item.action.removeprefix("sandbox."),
            command=args.get("command"),
            path=args.get("path"),
            exit_code=exit_code,
            duration_ms=item.latency_ms,
            detail=detail,
            at=item.ts,
        )
