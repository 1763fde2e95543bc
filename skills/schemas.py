"""Request and response shapes of the skills API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from gateway.schemas import Strict

Visibility = Literal["private", "team", "public"]


class ProblemOut(BaseModel):
    field: str
    line: int | None
    message: str


class ValidationOut(BaseModel):
    """A verdict without storing anything."""

    valid: bool
    name: str | None
    errors: list[ProblemOut]
    warnings: list[ProblemOut]


class FileOut(BaseModel):
    path: str
    size: int
    sha256: str
    executable: bool


class VersionOut(BaseModel):
    version: int
    digest: str
    summary: str
    source: dict[str, Any]
    created_by: str | None
    created_at: datetime
    file_count: int
    size: int


class SkillSummary(BaseModel):
    id: str
    name: str
    description: str
    visibility: Visibility
    team_id: str | None
    owner_id: str | None
    version: int
    source: dict[str, Any]
    updated_at: datetime


class SkillOut(SkillSummary):
    """A skill at one version: frontmatter as written and as parsed, body, files."""

    created_at: datetime
    shown_version: int = Field(description="The version these contents are from.")
    frontmatter: dict[str, Any]
    frontmatter_raw: str
    license: str | None
    compatibility: str | None
    metadata: dict[str, Any]
    allowed_tools: list[str]
    body: str
    files: list[FileOut]
    versions: list[VersionOut]
    linked_servers: list[str]
    warnings: list[ProblemOut]


class SkillUpdate(Strict):
    visibility: Visibility | None = None
    team_id: str | None = Field(None, max_length=36)


class RollbackRequest(Strict):
    version: int = Field(ge=1)


class LinksRequest(Strict):
    servers: list[str] = Field(max_length=100)


class ToolProblemOut(BaseModel):
    server: str
    tool: str
    field: str
    line: int | None
    message: str


class LinksOut(BaseModel):
    servers: list[str]
    missing_tools: list[ToolProblemOut]


class StatsOut(BaseModel):
    name: str
    version: int
    versions: int
    loads: int
    downloads: int
    last_loaded_at: datetime | None
    last_downloaded_at: datetime | None


class ImportRequest(Strict):
    source: str = Field(min_length=1, max_length=2048)
    skill: str | None = Field(None, max_length=64, description="Import only this skill.")
    ref: str | None = Field(None, max_length=255, description="Branch, tag or commit.")
    strict: bool = True
    visibility: Visibility | None = None
    team_id: str | None = Field(None, max_length=36)


class ImportedSkill(BaseModel):
    name: str
    status: Literal["created", "updated", "unchanged", "invalid"]
    version: int | None
    errors: list[ProblemOut]
    warnings: list[ProblemOut]


class ImportOut(BaseModel):
    source: str
    kind: str
    url: str
    commit: str | None
    skills: list[ImportedSkill]
