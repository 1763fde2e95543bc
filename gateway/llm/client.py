"""One OpenAI-compatible chat-completions endpoint, through the ``openai`` client.

Every completion is streamed: text arrives as deltas (handed to ``on_token`` as it
comes, for ``token`` job events) and tool calls arrive in pieces that are put back
together here. The API key is a secret: it goes only into the client's
``Authorization`` header, never into a log line, an event or an error message.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.errors import AppError

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from gateway.config import Settings

TokenSink = Callable[[str], Awaitable[None]]

# What the settings are called, for the 409 that says which to set.
_SETTINGS = ("MCPGW_LLM_BASE_URL", "MCPGW_LLM_MODEL")


class ModelNotConfigured(AppError):
    """A model path was asked for and no model endpoint is configured."""

    status_code = 409
    code = "model_not_configured"


class ModelError(AppError):
    """The model endpoint failed or answered something unusable (the message is safe
    to show: it never holds the key). A job that meets it fails with ``model_failed``."""

    status_code = 502
    code = "model_failed"


@dataclass(frozen=True)
class ModelConfig:
    """Where the model is and how to ask it (``api_key`` is never shown)."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 120.0
    max_tokens: int = 8192


def model_config(settings: Settings) -> ModelConfig | None:
    """The configured model, or None when ``MCPGW_LLM_BASE_URL``/``MODEL`` are unset."""
    if not settings.llm_base_url or not settings.llm_model:
        return None
    key = settings.llm_api_key
    return ModelConfig(
        base_url=settings.llm_base_url,
        model=settings.llm_model,
        api_key=key.get_secret_value() if key else None,
        timeout=settings.llm_timeout_seconds,
        max_tokens=settings.llm_max_tokens,
    )


def require_model(settings: Settings, what: str) -> ModelConfig:
    """The configured model; :class:`ModelNotConfigured` (409) naming the settings to
    set when there is none. ``what``: the feature that needs it, for the message."""
    config = model_config(settings)
    if config is None:
        missing = [
            name
            for name, value in zip(
                _SETTINGS, (settings.llm_base_url, settings.llm_model), strict=True
            )
            if not value
        ]
        raise ModelNotConfigured(
            f"{what} needs a model: set {' and '.join(missing)} (and MCPGW_LLM_API_KEY if the "
            "endpoint wants a key) to an OpenAI-compatible chat-completions endpoint",
            missing=missing,
        )
    return config


@dataclass
class ToolCall:
    """A tool call the model asked for (``arguments`` as the model wrote them: JSON)."""

    id: str
    name: str
    arguments: str = ""

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as an object; :class:`ModelError` if they are not JSON."""
        try:
            value = json.loads(self.arguments or "{}")
        except ValueError as exc:
            raise ModelError(
                f"the model's call of {self.name!r} has arguments that are not JSON"
            ) from exc
        if not isinstance(value, dict):
            raise ModelError(
                f"the model's call of {self.name!r} has arguments that are not an object"
            )
        return value


@dataclass
class Completion:
    """What one completion produced: text, tool calls, and why it stopped."""

    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None

    def as_message(self) -> dict[str, Any]:
        """The assistant message to put back into the conversation (tool-calling loops)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in self.tool_calls
            ]
        return message


class ModelClient:
    """Completions from one configured endpoint (one pooled HTTP client per instance)."""

    def __init__(self, config: ModelConfig, *, client: AsyncOpenAI | None = None) -> None:
        from openai import AsyncOpenAI

        self.config = config
        self._client = client or AsyncOpenAI(
            base_url=config.base_url,
            # The client insists on a key; endpoints without one ignore the header.
            api_key=config.api_key or "unused",
            timeout=config.timeout,
            max_retries=2,
        )

    async def complete(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        on_token: TokenSink | None = None,
        on_arguments: TokenSink | None = None,
        temperature: float = 0.0,
    ) -> Completion:
        """Stream one completion of ``messages`` (offering ``tools``, OpenAI's function
        shape); text deltas go to ``on_token`` and tool-call argument deltas to
        ``on_arguments`` as they arrive."""
        from openai import OpenAIError

        request: dict[str, Any] = {
            "model": self.config.model,
            "messages": list(messages),
            "stream": True,
            "temperature": temperature,
            "max_tokens": self.config.max_tokens,
        }
        if tools:
            request["tools"] = list(tools)
        result = Completion()
        calls: dict[int, ToolCall] = {}
        text: list[str] = []
        try:
            stream = await self._client.chat.completions.create(**request)
            async for chunk in stream:
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                        if on_token is not None:
                            await on_token(delta.content)
                    for piece in delta.tool_calls or ():
                        call = calls.setdefault(piece.index, ToolCall(id="", name=""))
                        call.id = piece.id or call.id
                        if piece.function is not None:
                            call.name += piece.function.name or ""
                            call.arguments += piece.function.arguments or ""
                            if on_arguments is not None and piece.function.arguments:
                                await on_arguments(piece.function.arguments)
                    if choice.finish_reason:
                        result.finish_reason = choice.finish_reason
        except OpenAIError as exc:
            raise ModelError(_describe(exc)) from None
        result.content = "".join(text)
        result.tool_calls = [calls[i] for i in sorted(calls)]
        for n, call in enumerate(result.tool_calls):
            call.id = call.id or f"call_{n}"
        return result

    async def close(self) -> None:
        """Release the HTTP connections."""
        await self._client.close()


def _describe(exc: Exception) -> str:
    """A message about a failed request that names the status, never the key."""
    from openai import APIConnectionError, APIStatusError, APITimeoutError

    if isinstance(exc, APITimeoutError):
        return "the model endpoint did not answer in time"
    if isinstance(exc, APIConnectionError):
        return "the model endpoint cannot be reached"
    if isinstance(exc, APIStatusError):
        return f"the model endpoint answered HTTP {exc.status_code}"
    return f"the model request failed ({type(exc).__name__})"
