"""Request and response shapes of the identity API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from gateway.auth.rbac import Role, validate_scope
from gateway.policy import globs
from gateway.schemas import Strict

T = TypeVar("T")

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
_TEAM_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")

Scope = Annotated[str, AfterValidator(validate_scope)]
InterfaceMode = Literal["list", "search_execute", "auto"]


# --- users ----------------------------------------------------------------------------
class UserCreate(Strict):
    email: str = Field(max_length=320)
    name: str = Field("", max_length=200)
    role: Role = Role.DEVELOPER

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError("must be an email address like ada@example.com")
        return value.lower()


class UserUpdate(Strict):
    name: str | None = Field(None, max_length=200)
    role: Role | None = None
    is_active: bool | None = None


class TeamRef(BaseModel):
    id: str
    name: str
    role: str


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str
    name: str
    role: str
    is_active: bool
    created_at: datetime


# --- teams ----------------------------------------------------------------------------
class TeamCreate(Strict):
    name: str = Field(min_length=1, max_length=64)
    description: str = Field("", max_length=2000)
    interface_mode: InterfaceMode | None = Field(
        None, description="How /mcp presents tools to members (default: the global setting)."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _TEAM_NAME.match(value):
            raise ValueError(
                "must be lowercase letters, digits and hyphens, not starting or ending "
                "with a hyphen (like 'data-platform')"
            )
        return value


class TeamUpdate(Strict):
    description: str | None = Field(None, max_length=2000)
    interface_mode: InterfaceMode | None = None


class MemberAdd(Strict):
    user_id: str = Field(min_length=1, max_length=36)
    role: str = Field("member", pattern="^(owner|member)$")


class MemberOut(BaseModel):
    user_id: str
    email: str
    name: str
    role: str


class TeamOut(BaseModel):
    id: str
    name: str
    description: str
    interface_mode: str | None = None
    created_at: datetime
    members: list[MemberOut] | None = None


# --- keys -----------------------------------------------------------------------------
def _tool_glob(value: str) -> str:
    return globs.check(value)


KeyTag = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
ToolGlob = Annotated[str, AfterValidator(_tool_glob)]


class KeyCreate(Strict):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(default_factory=lambda: ["*"], min_length=1, max_length=50)
    expires_at: datetime | None = None
    expires_in_days: int | None = Field(None, ge=1, le=3650)
    user_id: str | None = Field(None, description="Admins may create a key for another user.")
    interface_mode: InterfaceMode | None = Field(
        None, description="How /mcp presents tools to this key (default: team's, else global)."
    )
    tags: list[KeyTag] = Field(
        default_factory=list, max_length=20, description="Labels policies can match."
    )
    tools_allow: list[ToolGlob] | None = Field(
        None,
        max_length=100,
        description="Only tools matching one of these globs (`server__tool`); omit: any.",
    )
    tools_deny: list[ToolGlob] = Field(
        default_factory=list, max_length=100, description="Never tools matching these globs."
    )

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a time zone, e.g. 2027-01-01T00:00:00Z")
        return value


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    user_id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    interface_mode: str | None = None
    tags: list[str] | None = None
    tools_allow: list[str] | None = None
    tools_deny: list[str] | None = None


class KeyCreated(KeyOut):
    key: str = Field(description="The secret. Shown once; store it now.")


class Me(BaseModel):
    user: UserOut
    teams: list[TeamRef]
    key: KeyOut | None
    permissions_role: str
    scopes: list[str]
