"""Request/response shapes of the servers API, and the per-type server configs."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.errors import InvalidInput
from gateway.procenv import check_env
from gateway.schemas import Strict, validated
from gateway.servers.connections.schemas import Credentials
from gateway.servers.limits import LimitsIn
from gateway.servers.runtimes.backend_tls import CLIENT_CERT, CLIENT_KEY, tls_context
from gateway.servers.transforms import TransformsIn

SERVER_TYPES = ("npx", "uvx", "docker", "remote", "generated", "bundle")
ServerType = Literal["npx", "uvx", "docker", "remote", "generated", "bundle"]

# DNS-label-like: the name becomes the tool namespace (`{name}__{tool}`), so no underscores.
NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
_NAME = re.compile(NAME_PATTERN)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
_PACKAGE = re.compile(r"^(@[a-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
_MODULE_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/-]*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$")


def _check_args(args: list[str]) -> list[str]:
    for arg in args:
        if "\x00" in arg:
            raise ValueError("arguments may not contain NUL bytes")
    return args


_ISOLATION_DOC = (
    "`sandbox`: run in the gateway's isolation (MCPGW_SERVER_ISOLATION). `none` (admins "
    "only, dangerous): a host process that can read everything the gateway can, its secret "
    "key and database included."
)
_OFFLINE_DOC = (
    "No network inside the sandbox (only its own loopback); the package is fetched with "
    "network first."
)


def _offline_isolated(config: NpxConfig | UvxConfig) -> None:
    if config.offline and config.isolation == "none":
        raise ValueError("offline needs isolation: a server with isolation 'none' has the network")


class NpxConfig(Strict):
    package: str = Field(min_length=1, max_length=214, description="npm package name.")
    version: str | None = Field(None, max_length=64, description="npm version or range.")
    args: list[str] = Field(default_factory=list, max_length=64)
    isolation: Literal["sandbox", "none"] = Field("sandbox", description=_ISOLATION_DOC)
    offline: bool = Field(False, description=_OFFLINE_DOC)

    @field_validator("package")
    @classmethod
    def _package(cls, value: str) -> str:
        if not _PACKAGE.match(value):
            raise ValueError("must be an npm package name like @scope/name or name")
        return value

    @field_validator("args")
    @classmethod
    def _args(cls, value: list[str]) -> list[str]:
        return _check_args(value)

    @model_validator(mode="after")
    def _offline_needs_isolation(self) -> Self:
        _offline_isolated(self)
        return self


class UvxConfig(Strict):
    package: str = Field(min_length=1, max_length=214, description="PyPI package name.")
    version: str | None = Field(None, max_length=64)
    command: str | None = Field(
        None, max_length=128, description="Console script to run, when it differs from package."
    )
    args: list[str] = Field(default_factory=list, max_length=64)
    isolation: Literal["sandbox", "none"] = Field("sandbox", description=_ISOLATION_DOC)
    offline: bool = Field(False, description=_OFFLINE_DOC)

    @field_validator("package")
    @classmethod
    def _package(cls, value: str) -> str:
        if not _PACKAGE.match(value) or value.startswith("@"):
            raise ValueError("must be a PyPI package name like mcp-server-time")
        return value

    @field_validator("args")
    @classmethod
    def _args(cls, value: list[str]) -> list[str]:
        return _check_args(value)

    @model_validator(mode="after")
    def _offline_needs_isolation(self) -> Self:
        _offline_isolated(self)
        return self


class DockerConfig(Strict):
    image: str = Field(min_length=1, max_length=255)
    args: list[str] = Field(default_factory=list, max_length=64, description="Container args.")
    mode: Literal["stdio", "http"] = "stdio"
    port: int | None = Field(None, ge=1, le=65535, description="Container port (http mode).")
    path: str = Field("/mcp", max_length=200, description="MCP endpoint path (http mode).")
    network: Literal["none", "bridge"] = Field(
        "none", description="`none` (default) or `bridge` for servers that need the network."
    )
    memory: str = Field("512m", pattern=r"^\d+[kmg]?$")
    cpus: float = Field(1.0, gt=0, le=64)
    pids_limit: int = Field(256, ge=16, le=100_000)
    read_only: bool = True

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not _IMAGE.match(value):
            raise ValueError("must be an image reference like name:tag")
        return value

    @field_validator("args")
    @classmethod
    def _args(cls, value: list[str]) -> list[str]:
        return _check_args(value)


class RemoteConfig(Strict):
    url: str = Field(min_length=1, max_length=2048)
    transport: Literal["auto", "streamable_http", "sse"] = "auto"
    # The protocol era the gateway speaks to the server: `auto` tries 2026-07-28
    # (`server/discover`) and falls back to the 2025-11-25 handshake.
    protocol: Literal["auto", "2025-11-25", "2026-07-28"] = "auto"
    headers: dict[str, str] = Field(default_factory=dict, max_length=32)
    credentials: Credentials | None = Field(
        None,
        description="Each user brings their own credential (`oauth` or `secret`): calls use "
        "the caller's connection (/api/v1/connections). See docs/authentication.md.",
    )
    tls_ca: str | None = Field(
        None,
        max_length=65_536,
        description="PEM certificates of a private CA to verify this backend with (instead "
        "of the system's). A client certificate goes in the secrets TLS_CLIENT_CERT and "
        "TLS_CLIENT_KEY.",
    )

    @field_validator("tls_ca")
    @classmethod
    def _tls_ca(cls, value: str | None) -> str | None:
        if value is not None:
            tls_context(value, None, None)  # ValueError: not PEM certificates
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return remote_url(value)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return header_names(value)


def remote_url(value: str) -> str:
    """``value`` if it is a remote server's URL (http(s), a host, no credentials)."""
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("put credentials in secret_headers, not in the URL")
    return value


def server_name(value: str) -> str:
    """``value`` if it is a valid server name (it becomes the tool namespace)."""
    if not _NAME.match(value) or "--" in value:
        raise ValueError(
            "must be lowercase letters, digits and single hyphens, 1-63 characters, "
            "not starting or ending with a hyphen (like 'github' or 'time-utils')"
        )
    return value


def header_names(value: dict[str, str]) -> dict[str, str]:
    """``value`` if every key is a valid HTTP header name."""
    for name in value:
        if not _HEADER_NAME.match(name):
            raise ValueError(f"invalid header name {name!r}")
    return value


class GeneratedConfig(Strict):
    module: str | None = Field(
        None, description="`package.module:attribute` naming an MCP server object."
    )
    source: str | None = Field(
        None, max_length=200_000, description="Python source that defines the server object."
    )
    openapi: dict[str, Any] | None = Field(
        None,
        description="An OpenAPI 3.x document: one tool per operation (FastMCP's OpenAPI "
        "support), calling `base_url`; what the server generator writes.",
    )
    base_url: str | None = Field(
        None, max_length=2048, description="With `openapi`: the API's base URL."
    )
    tools: list[str] | None = Field(
        None,
        max_length=5000,
        description="With `openapi`: the operations' tool names to offer (unset: all).",
    )
    attribute: str = Field("server", pattern=r"^[A-Za-z_]\w*$")
    protocol: Literal["auto", "2025-11-25", "dual"] = Field(
        "auto",
        description="`2025-11-25` keeps a back-channel so the server's sampling, elicitation "
        "and log requests reach the agent; `auto` speaks 2026-07-28 in-process; `dual` keeps "
        "one session of each era and serves every agent request on its own era's.",
    )

    @field_validator("module")
    @classmethod
    def _module(cls, value: str | None) -> str | None:
        if value is not None and not _MODULE_REF.match(value):
            raise ValueError("must look like package.module:attribute")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> GeneratedConfig:
        given = [f for f in ("module", "source", "openapi") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of module, source or openapi")
        if self.openapi is not None:
            if not self.base_url or not self.base_url.startswith(("http://", "https://")):
                raise ValueError("openapi needs base_url, an http(s) URL")
        elif self.base_url is not None or self.tools is not None:
            raise ValueError("base_url and tools go with openapi")
        return self


class BundleMember(Strict):
    name: str = Field(description="Member name; its tools appear as `{bundle}__{name}_{tool}`.")
    server: str | None = Field(None, description="An already registered server.")
    type: Literal["npx", "uvx", "docker", "remote", "generated"] | None = None
    config: dict[str, Any] | None = None

    @field_validator("name", "server")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("must be lowercase letters, digits and hyphens")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> BundleMember:
        if (self.server is None) == (self.type is None):
            raise ValueError("a member names a registered `server` or gives `type` and `config`")
        return self


class BundleConfig(Strict):
    members: list[BundleMember] = Field(min_length=1, max_length=64)

    @field_validator("members")
    @classmethod
    def _unique(cls, value: list[BundleMember]) -> list[BundleMember]:
        names = [m.name for m in value]
        if len(set(names)) != len(names):
            raise ValueError("member names must be unique")
        return value


CONFIG_MODELS: dict[str, type[Strict]] = {
    "npx": NpxConfig,
    "uvx": UvxConfig,
    "docker": DockerConfig,
    "remote": RemoteConfig,
    "generated": GeneratedConfig,
    "bundle": BundleConfig,
}


def parse_config(server_type: str, config: dict[str, Any], field: str = "config") -> Strict:
    """Validate ``config`` for ``server_type``; errors name the field (``config.url``)."""
    model = CONFIG_MODELS.get(server_type)
    if model is None:
        raise InvalidInput(
            f"unknown server type {server_type!r}; one of {list(SERVER_TYPES)}",
            errors=[{"field": "type", "message": f"must be one of {list(SERVER_TYPES)}"}],
        )
    parsed = validated(model, config, field, f"{server_type} config")
    if isinstance(parsed, BundleConfig):
        for i, member in enumerate(parsed.members):
            if member.type is not None:
                where = f"{field}.members.{i}.config"
                parse_config(member.type, member.config or {}, where)
                if (member.config or {}).get("credentials") is not None:
                    message = "per-user credentials need a server of their own, not a member"
                    raise InvalidInput(
                        f"{where}.credentials: {message}",
                        errors=[{"field": f"{where}.credentials", "message": message}],
                    )
    return parsed


def _check_env(value: Any, field: str) -> Any:
    """Names must be plain variable names; values have no NUL byte; and no variable may
    make a loader, shell or interpreter run code (``LD_PRELOAD``, ``NODE_OPTIONS``, …:
    ``422 env_not_allowed``), since a server's env reaches processes the gateway starts."""
    if value is None:
        return value
    for name, item in value.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid environment variable name {name!r}")
        if item is not None and "\x00" in item:
            raise ValueError(f"{name}: values may not contain NUL bytes")
    check_env({k: v or "" for k, v in value.items()}, field=field)
    return value


class ServerCreate(Strict):
    name: str = Field(min_length=1, max_length=63, description="Becomes the tool namespace.")
    type: str = Field(description=f"One of {', '.join(SERVER_TYPES)}.")
    config: dict[str, Any] = Field(default_factory=dict)
    description: str = Field("", max_length=4000)
    tags: list[str] = Field(default_factory=list, max_length=32)
    enabled: bool = True
    env: dict[str, str] = Field(default_factory=dict, max_length=100)
    secrets: dict[str, str] = Field(
        default_factory=dict, max_length=100, description="Secret env vars; stored encrypted."
    )
    secret_headers: dict[str, str] = Field(
        default_factory=dict, max_length=32, description="Secret HTTP headers (remote)."
    )
    team_id: str | None = Field(None, max_length=36)
    max_concurrency: int | None = Field(None, ge=1, le=10_000)
    limits: LimitsIn | None = Field(
        None,
        description="Request limits of this server and its tools (timeout, arguments "
        "size); unset: the global settings. See docs/calls.md#request-limits.",
    )
    transforms: TransformsIn | None = Field(
        None,
        description="Rename, re-describe or hide its tools, fix or default their arguments, "
        "drop or redact fields of their results. See docs/resilience.md#transforms.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return server_name(value)

    @field_validator("env", "secrets")
    @classmethod
    def _env(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        return _check_env(value, str(info.field_name))  # type: ignore[no-any-return]

    @field_validator("secret_headers")
    @classmethod
    def _secret_headers(cls, value: dict[str, str]) -> dict[str, str]:
        return header_names(value)

    @model_validator(mode="after")
    def _client_certificate(self) -> ServerCreate:
        cert, key = self.secrets.get(CLIENT_CERT), self.secrets.get(CLIENT_KEY)
        if cert or key:
            tls_context(None, cert, key)  # ValueError names the missing or broken part
        return self


class ServerUpdate(Strict):
    """Fields to change; secrets given here replace the stored ones of the same name,
    and a value of null removes one."""

    config: dict[str, Any] | None = None
    description: str | None = Field(None, max_length=4000)
    tags: list[str] | None = Field(None, max_length=32)
    enabled: bool | None = None
    env: dict[str, str] | None = Field(None, max_length=100)
    secrets: dict[str, str | None] | None = Field(None, max_length=100)
    secret_headers: dict[str, str | None] | None = Field(None, max_length=32)
    max_concurrency: int | None = Field(None, ge=1, le=10_000)
    limits: LimitsIn | None = Field(
        None, description="Replaces the server's request limits as a whole; `{}` removes them."
    )
    transforms: TransformsIn | None = Field(
        None, description="Replaces the server's tool transforms as a whole; `{}` removes them."
    )

    @field_validator("env", "secrets")
    @classmethod
    def _env(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        return _check_env(value, str(info.field_name))  # type: ignore[no-any-return]


class ReplicaOut(BaseModel):
    replica: int
    endpoint: str = Field(description="Its URL, or `process N` for a process replica.")
    weight: int
    status: Literal["healthy", "degraded", "unhealthy", "stopped", "ejected"]
    in_flight: int
    calls: int = Field(description="Requests sent to it by this gateway process.")
    failures: int = Field(description="Connection failures since it last answered.")
    ejected_for_seconds: float | None = None
    last_error: str | None = None


class HealthOut(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy", "stopped"]
    last_error: str | None = None
    latency_ms: float | None = None
    checked_at: datetime | None = None
    restarts: int = 0
    in_flight: int = 0
    protocol_version: str | None = Field(None, description="MCP version the session speaks.")
    breaker: dict[str, Any] | None = Field(
        None,
        description="Its circuit breakers: the server's (`state`: closed, half_open or open; "
        "`retry_at` while not closed), its tools' that failed lately (`tools`), calls "
        "retried and answered `unavailable` (docs/resilience.md). Null: no call seen yet.",
    )
    replicas: list[ReplicaOut] | None = Field(
        None,
        description="Its replicas when it has several (docs/resilience.md#replicas): each "
        "one's endpoint, weight, status (`ejected` while out), calls in flight and sent.",
    )


class ServerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    type: str
    config: dict[str, Any]
    description: str
    tags: list[str]
    enabled: bool
    env: dict[str, str]
    secrets: dict[str, str] = Field(description="Secret names, values masked.")
    secret_headers: dict[str, str] = Field(description="Secret header names, values masked.")
    team_id: str | None
    owner_id: str | None
    max_concurrency: int | None
    limits: dict[str, Any] | None = Field(
        None, description="Its request limits as set (the shape of `limits` in; null: none)."
    )
    transforms: dict[str, Any] | None = Field(
        None, description="Its tool transforms as set (the shape of `transforms` in; null: none)."
    )
    version: int
    created_at: datetime
    updated_at: datetime
    health: HealthOut
    tool_count: int = 0
    cache: Any = Field(
        None,
        description="Its response cache in this process (`GET /servers/{name}/cache`'s "
        "shape); null: its answers are not cached.",
    )


class ServerVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    snapshot: dict[str, Any]
    summary: str
    changed_by: str | None
    changed_at: datetime


class CatalogItemOut(BaseModel):
    server: str
    kind: str
    name: str
    qualified_name: str | None = Field(None, description="`{server}__{tool}` for tools.")
    description: str
    definition: dict[str, Any]
    definition_hash: str
    keywords: list[str] = Field(
        default_factory=list, description="Search keywords an admin added (tools only)."
    )
    available: bool = Field(
        True,
        description="False while the gateway knows the tool cannot be called (its server "
        "is unreachable or a circuit breaker is open): still listed, calls fail at once.",
    )
    unavailable: dict[str, Any] | None = Field(
        None,
        description="Why it is unavailable: `scope` (server or tool), `reason` and, when "
        "known, `retryAt` (when the gateway tries it again).",
        examples=[
            {
                "scope": "server",
                "reason": "circuit breaker open after 5 failed calls",
                "retryAt": "2026-01-01T12:00:30Z",
            }
        ],
    )


Keyword = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class KeywordsIn(Strict):
    """A tool's search keywords: words or short phrases an agent may use for it that its
    own name and description lack ("invoice" for ``create_bill``); an empty list
    removes them."""

    keywords: list[Keyword] = Field(max_length=32, examples=[["invoice", "billing"]])


class ExecuteRequest(Strict):
    tool: str = Field(min_length=4, max_length=300, description="`{server}__{tool}`.")
    arguments: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = Field(None, gt=0, le=3600, description="Seconds; default from config.")
    run_async: bool = Field(
        False,
        alias="async",
        description="Answer 202 `{job_id}` at once; the call runs on as a job (docs/jobs.md).",
    )
    meta: dict[str, Any] | None = Field(
        None,
        alias="_meta",
        description='The MCP request\'s `_meta`: `{"io.mcpgw/cache": "no-cache"}` asks for a '
        "fresh answer (docs/resilience.md#response-cache).",
    )


class ExecuteResult(BaseModel):
    """An MCP CallToolResult (content, structuredContent, isError) plus gateway timing."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    content: list[dict[str, Any]]
    structuredContent: dict[str, Any] | None = None  # MCP wire name
    isError: bool = False
    duration_ms: float
    backend_error: dict[str, Any] | None = Field(
        None,
        description="The backend's JSON-RPC error `{code, message, data?}` when it refused "
        "the call (isError is then true); null otherwise.",
    )


class SearchRequest(Strict):
    """REST ``tools/search``: SEARCH_TOOLS' arguments."""

    query: str = Field(min_length=1, max_length=1000, description="What you want to do, in words.")
    limit: int = Field(10, ge=1, le=50)


class SearchHit(BaseModel):
    """One tool found: what SEARCH_TOOLS returns for it."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    description: str
    inputSchema: dict[str, Any]  # MCP wire name
    score: float
    reason: str = Field(description="Why it matched: query words by field, synonyms, cosine.")
    alternatives: list[str] = Field(
        default_factory=list, description="The same tool on other servers, folded into this hit."
    )
    unavailable: dict[str, Any] | None = Field(
        None, description="Set while the tool cannot be called: as in the REST catalog."
    )


class SearchResult(BaseModel):
    tools: list[SearchHit]
    hint: str
