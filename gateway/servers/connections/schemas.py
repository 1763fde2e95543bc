"""How a server declares that each user brings their own credential, and the shapes of
the connections API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator

from gateway.schemas import Strict

_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
ConnectionStatus = Literal["active", "expiring", "broken"]


def _http_url(value: str | None) -> str | None:
    if value is None:
        return value
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username or parts.password or parts.fragment:
        raise ValueError("must not carry credentials or a fragment")
    return value


class OAuthCredentials(Strict):
    """Each user signs in at the backend's authorization server (authorization code +
    PKCE); the gateway keeps their tokens sealed and refreshes them."""

    kind: Literal["oauth"]
    client_id: str = Field(min_length=1, max_length=512, description="The gateway's OAuth app.")
    client_secret: str | None = Field(
        None,
        max_length=4096,
        description="Write-only: sealed with the server's secrets, never returned.",
    )
    authorization_endpoint: str | None = Field(
        None, max_length=2048, description="Unset: discovered (RFC 9728, then RFC 8414/OIDC)."
    )
    token_endpoint: str | None = Field(None, max_length=2048)
    issuer: str | None = Field(
        None,
        max_length=2048,
        description="The authorization server, when the backend publishes no RFC 9728 "
        "metadata (its RFC 8414 or OpenID metadata is read).",
    )
    scopes: list[str] = Field(default_factory=list, max_length=64)
    resource: str | None = Field(
        None, max_length=2048, description="RFC 8707 resource indicator; default the server URL."
    )

    @field_validator("authorization_endpoint", "token_endpoint", "issuer", "resource")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return _http_url(value)

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        for scope in value:
            if not scope or any(c.isspace() or c in '"\\' for c in scope):
                raise ValueError(f"invalid scope {scope!r}")
        return value

    @model_validator(mode="after")
    def _endpoints_together(self) -> Self:
        if (self.authorization_endpoint is None) != (self.token_endpoint is None):
            raise ValueError(
                "give both authorization_endpoint and token_endpoint, or neither (discovery)"
            )
        return self


class SecretCredentials(Strict):
    """Each user enters a static secret (an API token), sent in a header."""

    kind: Literal["secret"]
    header: str = Field("Authorization", description="The HTTP header that carries it.")
    format: str = Field(
        "Bearer {secret}", max_length=256, description="The header's value; `{secret}` once."
    )
    instructions: str = Field(
        "", max_length=1000, description="Where a user gets their token (shown to them)."
    )

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        if not _HEADER_NAME.match(value):
            raise ValueError(f"invalid header name {value!r}")
        return value

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value.count("{secret}") != 1 or any(c in value for c in "\r\n\x00"):
            raise ValueError("must contain `{secret}` exactly once and no line breaks")
        return value


Credentials = Annotated[OAuthCredentials | SecretCredentials, Field(discriminator="kind")]


class ConnectionOut(BaseModel):
    """A user's connection to a server (never its tokens)."""

    id: str
    server: str
    user_id: str
    email: str | None = None
    kind: Literal["oauth", "secret"]
    status: ConnectionStatus
    expires_at: datetime | None = Field(None, description="When the access token expires.")
    failures: int = Field(0, description="Refresh failures in a row.")
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime
    refreshed_at: datetime | None = None


class ConnectionStart(Strict):
    """``POST /api/v1/connections/{server}``: a secret for `secret` servers; for `oauth`
    ones nothing (or where the browser goes afterwards)."""

    secret: str | None = Field(None, min_length=1, max_length=8192)
    next: str = Field("/", max_length=2048, description="Gateway path after the callback.")


class ConnectionStarted(BaseModel):
    """What to do next: open ``authorization_url`` (oauth), or nothing (connected)."""

    server: str
    kind: Literal["oauth", "secret"]
    authorization_url: str | None = None
    expires_in: int | None = Field(None, description="Seconds the authorization URL stays valid.")
    connection: ConnectionOut | None = None


def take_client_secret(config: dict[str, object]) -> tuple[dict[str, object], str | None]:
    """A validated server config without its OAuth client secret (which is sealed, never
    stored in ``config``), and that secret."""
    credentials = config.get("credentials")
    if not isinstance(credentials, dict) or "client_secret" not in credentials:
        return config, None
    rest = {k: v for k, v in credentials.items() if k != "client_secret"}
    secret = credentials["client_secret"]
    return {**config, "credentials": rest}, str(secret) if secret is not None else None


def per_user_kind(config: dict[str, object]) -> str | None:
    """``oauth`` or ``secret`` when a server's users bring their own credential."""
    credentials = config.get("credentials")
    return str(credentials.get("kind")) if isinstance(credentials, dict) else None
