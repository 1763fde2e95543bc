"""Gateway configuration: ``MCPGW_*`` environment variables and an optional YAML file.

Precedence, highest first: explicit keyword arguments (tests), environment
variables, the YAML file (``MCPGW_CONFIG_FILE``, default ``./mcpgw.yaml`` when it
exists), built-in defaults. Everything is validated once at start; a bad value
stops the process with a message naming the setting (see :func:`describe_errors`).
"""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from gateway.config_cache import CacheSettings
from gateway.config_identity import IdentitySettings, split_commas
from gateway.config_jobs import JobSettings
from gateway.config_llm import LlmSettings
from gateway.config_policy import PolicySettings
from gateway.config_resilience import ResilienceSettings
from gateway.config_search import SearchSettings
from gateway.config_telemetry import TelemetrySettings

ENV_PREFIX = "MCPGW_"

# What a package runner (npx, uvx, pip) needs from the host to reach its registry.
DEFAULT_INHERITED_ENV = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "PIP_CERT",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_NATIVE_TLS",
    "UV_CACHE_DIR",
    "NPM_CONFIG_REGISTRY",
    "NPM_CONFIG_CACHE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "XDG_CACHE_HOME",
    "TZ",
)
DEFAULT_CONFIG_FILE = "mcpgw.yaml"


class ConfigError(Exception):
    """Raised when the configuration is invalid; the message names every bad setting."""


def _config_file() -> Path | None:
    explicit = os.environ.get(f"{ENV_PREFIX}CONFIG_FILE")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{ENV_PREFIX}CONFIG_FILE: no such file: {path}")
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


class Settings(
    CacheSettings,
    IdentitySettings,
    JobSettings,
    LlmSettings,
    PolicySettings,
    ResilienceSettings,
    SearchSettings,
    TelemetrySettings,
    BaseSettings,
):
    """Every tunable of the gateway. Field ``foo_bar`` is env ``MCPGW_FOO_BAR``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
        frozen=True,
    )

    # --- process ---------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address `mcpgw serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `mcpgw serve` listens on.")
    data_dir: Path = Field(
        Path(".mcpgw"), description="Where the embedded default keeps its SQLite file and state."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Minimum level of log lines."
    )
    log_format: Literal["json", "console"] = Field(
        "json", description="`json`: one JSON object per line; `console`: for humans."
    )

    # --- storage ---------------------------------------------------------------
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL. Unset: SQLite under data_dir. "
        "PostgreSQL: `postgresql://user@host/db` (psycopg 3).",
    )
    auto_migrate: bool | None = Field(
        None,
        description="Run migrations on `serve`. Unset: on for SQLite, off for PostgreSQL "
        "(run `mcpgw db upgrade`).",
    )

    # --- MCP servers ------------------------------------------------------------
    allow_private_urls: bool = Field(
        False,
        description="Let remote servers and skill imports use loopback/private addresses "
        "(SSRF guard off for those). Off: such URLs are refused.",
    )
    server_call_timeout_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Default timeout of one tools/call to a backend (a server's or tool's "
        "own `limits.call_timeout_seconds` overrides it).",
    )
    server_connect_timeout_seconds: float = Field(
        60.0, gt=0, le=600, description="How long starting/connecting a backend may take."
    )
    server_idle_seconds: float = Field(
        600.0,
        ge=0,
        description="Stop on-demand stdio servers unused this long (0: never).",
    )
    server_max_concurrency: int = Field(
        32, ge=1, le=10_000, description="Default concurrent calls per backend server."
    )
    connections_refresh_interval_seconds: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="How often each replica re-reads users' backend connections, and the "
        "one holding the refresher lease refreshes the tokens that are due.",
    )
    connections_refresh_margin_seconds: float = Field(
        300.0,
        ge=0,
        le=86_400,
        description="Refresh a user's backend token this long before it expires (at most "
        "half its lifetime).",
    )
    connections_refresh_jitter_seconds: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="Up to this much earlier still, at random, so tokens do not all "
        "refresh at once.",
    )
    connections_max_refresh_failures: int = Field(
        3,
        ge=1,
        le=100,
        description="Refusals (`invalid_grant`) in a row before a connection is marked "
        "broken and its user told to reconnect.",
    )
    server_inherit_env: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_INHERITED_ENV),
        description="Host variables passed to stdio/docker servers besides PATH, HOME and the "
        "like (comma-separated): trust stores, proxies, package indexes. The gateway's own "
        "MCPGW_* settings never pass.",
    )
    server_isolation: Literal["auto", "bwrap", "none"] = Field(
        "auto",
        description="How npx/uvx servers are isolated from the gateway host: `bwrap` (each in "
        "its own bubblewrap sandbox: no view of data_dir, a private home; servers fail to "
        "start without it), `auto` (bwrap where it works, else host processes with a "
        "warning) or `none` (host processes with the gateway's file access).",
    )
    health_interval_seconds: float = Field(
        30.0, gt=0, le=3600, description="How often running backends are pinged."
    )
    git_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders whose git repositories the essentials `git` tools may read "
        "(comma-separated in the environment). Empty: none.",
    )

    # --- skill import sources ----------------------------------------------------
    skills_github_base: str = Field(
        "https://github.com",
        description="Where `owner/repo` skill sources live: `owner/repo` clones "
        "`{base}/owner/repo.git`, and tree URLs on this host are understood (GitHub Enterprise, "
        "a mirror). Remote sources obey MCPGW_ALLOW_PRIVATE_URLS.",
    )
    skills_catalog_url: str = Field(
        "https://skills.sh",
        description="Base URL of the skills.sh-compatible catalog (`GET {base}/api/search?q=`) "
        "that `catalog:<id>` sources and catalog search use.",
    )
    skills_allow_local_import: bool = Field(
        False,
        description="Let skill imports read a path (or file:// URL) on the gateway's own disk. "
        "Off by default so API callers cannot read server files; turn on for a CLI or "
        "single-user install.",
    )
    skills_git_timeout_seconds: float = Field(
        120.0, gt=0, le=3600, description="Longest a skill import's git clone may take."
    )
    skills_max_source_bytes: int = Field(
        200 * 1024 * 1024,
        ge=1024 * 1024,
        description="Largest checkout a skill import may write to disk; bigger clones are "
        "stopped (point the source at a sub-path to import from a large repository).",
    )

    # --- skills ------------------------------------------------------------------
    skills_max_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1024,
        description="Largest total size of a skill's files (uncompressed); larger uploads "
        "and imports are refused.",
    )
    skills_max_files: int = Field(
        100, ge=1, le=100_000, description="Most files one skill may hold."
    )
    skills_max_ratio: float = Field(
        100.0,
        ge=2,
        description="Refuse archive entries that inflate more than this many times their "
        "compressed size (zip bombs).",
    )
    skills_stats_flush_seconds: float = Field(
        15.0, gt=0, le=3600, description="How often skill load/download counts are written."
    )

    # --- sandboxes -----------------------------------------------------------------
    sandbox_provider: Literal["local", "docker", "kubernetes", "agent-sandbox"] = Field(
        "local",
        description="Default sandbox provider: `local` (bubblewrap, no daemon), `docker`, "
        "`kubernetes` (a Pod + PVC per sandbox) or `agent-sandbox` (kubernetes-sigs/agent-sandbox "
        "SandboxClaims against a SandboxWarmPool).",
    )
    sandbox_dir: Path | None = Field(
        None,
        description="Where `local` sandboxes keep their workspaces. Unset: data_dir/sandboxes.",
    )
    sandbox_cpus: float = Field(
        1.0, gt=0, le=64, description="Default CPU limit of a sandbox (cores)."
    )
    sandbox_memory_mb: int = Field(
        512, ge=16, le=1_048_576, description="Default memory limit of a sandbox (MiB)."
    )
    sandbox_pids: int = Field(
        256, ge=8, le=100_000, description="Default limit on processes in a sandbox."
    )
    sandbox_disk_mb: int = Field(
        1024, ge=1, description="Default workspace size limit of a sandbox (MiB)."
    )
    sandbox_disk_limit: Literal["auto", "loop", "measured"] = Field(
        "auto",
        description="How `local` and `docker` sandboxes hold to their disk limit: `loop` "
        "(a loop-mounted ext4 image per workspace: writes past the limit fail with ENOSPC; "
        "needs root, loop devices and mkfs.ext4), `measured` (a plain directory measured "
        "after each exec: not a hard limit) or `auto` (`loop` where possible).",
    )
    sandbox_exec_timeout_seconds: float = Field(
        60.0, gt=0, le=86_400, description="Default timeout of one sandbox exec."
    )
    sandbox_output_max_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Most bytes of stdout (and of stderr) one exec returns; the rest is cut.",
    )
    sandbox_file_max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest sandbox file the files API returns."
    )
    sandbox_fs_workers: int = Field(
        8,
        ge=1,
        le=256,
        description="Threads for the sandboxes' own blocking file I/O (workspace reads, "
        "writes, listings, disk measurements); never the process's default executor.",
    )
    sandbox_fs_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Longest one workspace file operation may take before it fails with "
        "`sandbox_fs_timeout` (504).",
    )
    sandbox_max_per_user: int = Field(
        10, ge=0, description="Most sandboxes (not destroyed) one user may have."
    )
    sandbox_max_disk_mb_per_user: int = Field(
        10_240, ge=1, description="Most workspace disk (MiB) one user's sandboxes may use."
    )
    sandbox_allow_network: bool = Field(
        False,
        description="Let sandboxes ask for network access (`network: egress`); otherwise "
        "every sandbox has no network.",
    )
    sandbox_idle_stop_minutes: float = Field(
        30.0, ge=0, description="Stop running sandboxes idle this long (0: never)."
    )
    sandbox_destroy_after_days: float = Field(
        7.0, ge=0, description="Destroy sandboxes unused this long (0: never)."
    )
    sandbox_reaper_interval_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="How often idle sandboxes are looked for and activity/audit rows written.",
    )
    sandbox_kube_namespace: str = Field(
        "mcpgw-sandboxes",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="Namespace of `kubernetes` and `agent-sandbox` sandboxes (must exist).",
    )
    sandbox_kube_kubeconfig: Path | None = Field(
        None,
        description="Kubeconfig for the sandbox providers. Unset: the in-cluster service "
        "account when running in a pod, else KUBECONFIG or ~/.kube/config.",
    )
    sandbox_kube_context: str | None = Field(
        None, description="Kubeconfig context to use (unset: the current context)."
    )
    sandbox_kube_storage_class: str | None = Field(
        None, description="StorageClass of sandbox workspace PVCs (unset: the cluster default)."
    )
    sandbox_kube_image_registry: str = Field(
        "",
        description="Registry prefix for sandbox template images on Kubernetes, e.g. "
        "`registry.example.com/mcpgw` (unset: the image names as they are).",
    )
    sandbox_kube_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="imagePullPolicy of sandbox pods."
    )
    sandbox_kube_runtime_class: str | None = Field(
        None,
        description="runtimeClassName of sandbox pods, e.g. `gvisor` or `kata` for a "
        "stronger boundary than namespaces (unset: the cluster default runtime).",
    )
    sandbox_kube_network_policies: bool = Field(
        True,
        description="`kubernetes` provider: keep the two shared NetworkPolicies that deny "
        "all traffic to sandboxes without network and allow egress-only public access to "
        "the others (needs a CNI that enforces NetworkPolicy).",
    )
    sandbox_kube_api_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="Timeout of one Kubernetes API request."
    )
    sandbox_kube_ready_timeout_seconds: float = Field(
        180.0,
        gt=0,
        le=3600,
        description="How long creating, resuming or stopping a Kubernetes sandbox may take "
        "(image pull, scheduling, volume attach).",
    )
    sandbox_agent_sandbox_warm_pool: str = Field(
        "mcpgw-{template}",
        max_length=50,
        description="SandboxWarmPool that `agent-sandbox` claims from; `{template}` is the "
        "gateway template's name (sandboxes with network get the `-egress` pool when the "
        "gateway manages pools).",
    )
    sandbox_agent_sandbox_manage: bool = Field(
        True,
        description="Create the SandboxTemplate and SandboxWarmPool of a gateway template "
        "when missing (false: an admin provides them).",
    )
    sandbox_agent_sandbox_pool_size: int = Field(
        1, ge=0, le=1000, description="Replicas of the warm pools the gateway creates."
    )

    # --- the MCP endpoint ---------------------------------------------------------
    auth_required: bool = Field(
        True,
        description="Development only: false lets unauthenticated requests act as the "
        "bootstrap admin (for tools like the conformance suite). Refused on non-loopback hosts.",
    )
    mcp_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1:*", "localhost:*", "[::1]:*"],
        description="Host headers /mcp accepts (DNS-rebinding guard; `host:*` for any port; "
        "comma-separated). Add your public host name when serving beyond loopback.",
    )
    mcp_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        description="Origin headers /mcp accepts from browsers (comma-separated).",
    )
    interface_mode: Literal["list", "search_execute", "auto"] = Field(
        "auto",
        description="How /mcp presents tools: `list` (every definition), `search_execute` "
        "(SEARCH_TOOLS + EXECUTE_TOOL), `auto` (list up to the threshold). Teams and keys "
        "may override it.",
    )
    interface_auto_threshold: int = Field(
        30, ge=1, description="`auto` switches to search_execute above this many tools."
    )
    mcp_page_size: int = Field(
        500, ge=1, le=100_000, description="Items per page of tools/resources/prompts lists."
    )
    mcp_session_idle_seconds: float = Field(
        1800, gt=0, description="Close a 2025-11-25 /mcp session idle this long."
    )
    mcp_max_sessions_per_key: int = Field(
        100,
        ge=1,
        le=100_000,
        description="Open /mcp (2025-11-25) and /sse sessions one API key may hold per "
        "gateway process; `initialize` over it gets HTTP 429.",
    )

    # --- HTTP ------------------------------------------------------------------
    max_request_bytes: int = Field(
        12 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted; larger ones get 413. Servers and tools "
        "may have smaller limits of their own (`limits.max_request_bytes`).",
    )

    @field_validator(
        "git_roots",
        "server_inherit_env",
        "mcp_allowed_hosts",
        "mcp_allowed_origins",
        mode="before",
    )
    @classmethod
    def _split_roots(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = value.split(":", 1)[0]
        if scheme not in {
            "sqlite",
            "sqlite+aiosqlite",
            "postgres",
            "postgresql",
            "postgresql+psycopg",
        }:
            raise ValueError(
                f"unsupported database scheme {scheme!r}; use sqlite:/// or postgresql://"
            )
        return value

    @field_validator("host")
    @classmethod
    def _host_shape(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("must be a hostname or IP address")
        return value

    @model_validator(mode="after")
    def _auth_off_only_on_loopback(self) -> Settings:
        if not self.auth_required and not self.binds_loopback:
            raise ValueError(
                "MCPGW_AUTH_REQUIRED=false is for local development only and is refused "
                f"when binding to a non-loopback address (MCPGW_HOST={self.host})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file()
        if config_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    # --- derived ---------------------------------------------------------------
    @cached_property
    def resolved_database_url(self) -> str:
        """The async SQLAlchemy URL actually used (driver filled in)."""
        return normalize_database_url(self.database_url, self.data_dir)

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    @property
    def binds_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def normalize_database_url(url: str | None, data_dir: Path) -> str:
    """Turn a user-facing URL into the async-driver URL SQLAlchemy needs."""
    if not url:
        return f"sqlite+aiosqlite:///{(data_dir / 'mcpgw.db').resolve()}"
    scheme, rest = url.split(":", 1)
    if scheme == "sqlite":
        return f"sqlite+aiosqlite:{rest}"
    if scheme in {"postgres", "postgresql"}:
        return f"postgresql+psycopg:{rest}"
    return url


def describe_errors(exc: ValidationError) -> str:
    """One line per bad setting, naming its environment variable."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = loc[0] if loc else "settings"
        env_name = f"{ENV_PREFIX}{field.upper()}"
        where = f"{env_name} ({'.'.join(loc)})" if loc else "settings"
        value = err.get("input")
        shown = "" if "key" in field or "secret" in field or value is None else f" (got {value!r})"
        if isinstance(value, dict):
            shown = ""
        lines.append(f"{where}: {err['msg']}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build and validate settings, raising :class:`ConfigError` with readable text."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from exc
    except SettingsError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc
