"""Request shapes of the server generator and the input of its job kind."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.servers.schemas import header_names, server_name

KIND = "servers.generate"


class GenerateServer(BaseModel):
    """`POST /api/v1/servers/generate`: exactly one of `openapi` (an OpenAPI 3.x or
    Swagger 2.0 document, as an object or JSON/YAML text), `url` (where to fetch one)
    or `docs_url` (a documentation page, HTML or Markdown, that the model turns into
    an OpenAPI document)."""

    model_config = ConfigDict(extra="forbid")

    openapi: dict[str, Any] | str | None = Field(None, description="The document itself.")
    url: str | None = Field(None, max_length=2048, description="Fetch the document here.")
    docs_url: str | None = Field(
        None, max_length=2048, description="A documentation page (model path)."
    )
    name: str | None = Field(
        None, max_length=63, description="The server's name (default: from the API's title)."
    )
    base_url: str | None = Field(
        None, max_length=2048, description="Call the API here (default: the document's server)."
    )
    secret_headers: dict[str, str] = Field(
        default_factory=dict,
        max_length=32,
        description="Headers every API call carries (`Authorization`, `X-Api-Key`…): sealed "
        "at once, never shown again.",
    )
    test_calls: bool = Field(
        False,
        description="Consent: the job calls the selected read-only tools (GET) against the API "
        "and attaches what they answered.",
    )
    test_arguments: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        max_length=100,
        description="Arguments for test calls, by tool (tools with required parameters are "
        "test-called only when given here).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> GenerateServer:
        given = [f for f in ("openapi", "url", "docs_url") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of openapi, url or docs_url")
        for field in ("url", "docs_url", "base_url"):
            value = getattr(self, field)
            if value is not None and not value.startswith(("http://", "https://")):
                raise ValueError(f"{field} must be an http(s) URL")
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else server_name(value)

    @field_validator("secret_headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return header_names(value)


class GenerateInput(BaseModel):
    """The input of a `servers.generate` job as stored (the document already read, the
    secret headers sealed)."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["openapi", "url", "docs_url"]
    document: dict[str, Any] | None = None
    url: str | None = None
    name: str | None = None
    base_url: str | None = None
    secrets_sealed: str | None = None
    secret_header_names: list[str] = Field(default_factory=list)
    test_calls: bool = False
    test_arguments: dict[str, dict[str, Any]] = Field(default_factory=dict)
    feedback: str | None = Field(None, max_length=4000)
    previous_document: dict[str, Any] | None = None


def summarize(data: dict[str, Any]) -> str:
    """The job list's line for a generation: where from, never the secrets."""
    where = data.get("url") or f"inline {data.get('source')} document"
    parts = [f"{data.get('source')}: {where}"]
    if data.get("name"):
        parts.append(f"name={data['name']}")
    if data.get("feedback"):
        parts.append("with feedback")
    return ", ".join(parts)[:200]
