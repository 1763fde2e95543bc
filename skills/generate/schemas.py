"""Request shapes of the skill generator and the input of its job kind."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from skills.validation import name_problems

KIND = "skills.generate"
MAX_INTENT = 2000


class GenerateSkill(BaseModel):
    """`POST /api/v1/skills/generate`: what the skill is for, and the servers whose tools
    it teaches."""

    model_config = ConfigDict(extra="forbid")

    intent: str = Field(
        min_length=10, max_length=MAX_INTENT, description="What the skill should teach."
    )
    servers: list[str] = Field(
        default_factory=list, max_length=20, description="Linked servers (their tools)."
    )
    name: str | None = Field(
        None,
        max_length=64,
        description="The skill's name (default: from the intent); an existing skill of "
        "yours gets a new version.",
    )
    model: bool | None = Field(
        None,
        description="Use the configured model (default: when one is configured); false: "
        "the deterministic template.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and (problems := name_problems(value)):
            raise ValueError(f"name {value!r} {problems[0]}")
        return value


class ServerTool(BaseModel):
    """One tool of a linked server as the generator sees it (from the catalog)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    parameters: list[str] = Field(default_factory=list)


class GenerateInput(BaseModel):
    """The input of a `skills.generate` job as stored: the linked servers' tools were
    read from the catalog when the job was accepted (as the submitter sees them)."""

    model_config = ConfigDict(extra="forbid")

    intent: str = Field(min_length=10, max_length=MAX_INTENT)
    name: str
    servers: dict[str, list[ServerTool]] = Field(default_factory=dict)
    model: bool = False
    feedback: str | None = Field(None, max_length=4000)
    previous_files: dict[str, str] | None = None


def summarize(data: dict[str, Any]) -> str:
    """The job list's line for a generation: the name, the servers, how."""
    servers = ",".join(data.get("servers") or {}) or "no servers"
    how = "model" if data.get("model") else "template"
    again = ", with feedback" if data.get("feedback") else ""
    return f"{data.get('name')} ({servers}; {how}{again})"[:200]
