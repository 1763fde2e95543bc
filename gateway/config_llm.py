"""The model and generation part of the gateway's settings (mixed into
:class:`gateway.config.Settings`): the OpenAI-compatible endpoint the generators use,
and the limits on what they read."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator


class LlmSettings(BaseModel):
    """Model access (gateway/llm/) and generator limits. Field ``llm_foo`` is
    ``MCPGW_LLM_FOO``."""

    llm_base_url: str | None = Field(
        None,
        description="Base URL of an OpenAI-compatible chat-completions API "
        "(`https://api.openai.com/v1`, a vLLM or Ollama `.../v1`). Unset: the generators' "
        "model paths answer 409 `model_not_configured`; their deterministic paths work.",
    )
    llm_model: str | None = Field(
        None, max_length=200, description="The model name sent with every completion request."
    )
    llm_api_key: SecretStr | None = Field(
        None, description="Bearer key of the model endpoint (never logged or returned)."
    )
    llm_timeout_seconds: float = Field(
        120.0, gt=0, le=3600, description="How long one completion request may take."
    )
    llm_max_tokens: int = Field(
        8192, ge=16, le=1_000_000, description="Most tokens one completion may produce."
    )
    generate_max_document_bytes: int = Field(
        5 * 1024 * 1024,
        ge=1024,
        le=100 * 1024 * 1024,
        description="Largest API document (OpenAPI/Swagger, or documentation page) a "
        "generator reads, inline or fetched.",
    )

    @field_validator("llm_base_url")
    @classmethod
    def _base_url_scheme(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL such as https://api.openai.com/v1")
        return value.rstrip("/")

    @field_validator("llm_model")
    @classmethod
    def _blank_model(cls, value: str | None) -> str | None:
        return value or None
