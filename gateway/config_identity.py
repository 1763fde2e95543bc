"""The identity part of the gateway's settings (mixed into :class:`gateway.config.Settings`):
the first admin, API keys and their cache, external JWTs, OAuth and browser sessions,
the key that seals secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

# The asymmetric signature algorithms an external issuer may use (HS256 comes only with
# a shared secret).
JWT_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


def split_commas(value: object) -> object:
    """A comma-separated environment value as a list (other values as they are)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


ROLES = ("admin", "operator", "developer", "viewer")
SSO_PRESETS = ("oidc", "github", "google", "entra", "okta")


class SsoProvider(BaseModel):
    """One identity provider people sign in with (an item of MCPGW_SSO_PROVIDERS)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$", description="In /auth/login/{name}.")
    preset: Literal["oidc", "github", "google", "entra", "okta"] = "oidc"
    label: str | None = Field(None, max_length=64, description="Button text; default per preset.")
    issuer: str | None = Field(
        None,
        description="OpenID issuer (discovery at issuer/.well-known/openid-configuration); "
        "preset default for google and entra (with tenant).",
    )
    tenant: str | None = Field(None, description="Microsoft Entra ID tenant id or domain.")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    scopes: list[str] | None = Field(None, description="Requested scopes; default per preset.")
    authorize_url: str | None = Field(None, description="OAuth-only providers (github).")
    token_url: str | None = None
    api_url: str | None = Field(None, description="GitHub's API (default api.github.com).")
    allowed_domains: list[str] = Field(
        default_factory=list, description="Email domains that may sign in (empty: any)."
    )
    create_users: bool = Field(True, description="Create a user on first sign-in.")
    approve_new_users: bool = Field(
        False, description="New users wait, deactivated, until an admin activates them."
    )
    default_role: str = "viewer"
    group_claim: str = Field("groups", description="Claim listing the person's groups.")
    group_roles: dict[str, str] = Field(
        default_factory=dict,
        description='Group → role (`{"mcp-admins": "admin"}`); the highest mapped role '
        "is set on every sign-in.",
    )
    team_prefix: str | None = Field(
        "team:", description="Groups `<prefix><team>` make the person a member of that team."
    )

    @field_validator("default_role")
    @classmethod
    def _role(cls, value: str) -> str:
        if value not in ROLES:
            raise ValueError(f"must be one of {list(ROLES)}")
        return value

    @field_validator("group_roles")
    @classmethod
    def _roles(cls, value: dict[str, str]) -> dict[str, str]:
        wrong = {g: r for g, r in value.items() if r not in ROLES}
        if wrong:
            raise ValueError(f"{wrong}: roles must be one of {list(ROLES)}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> SsoProvider:
        if self.preset in ("oidc", "okta") and not self.issuer:
            raise ValueError(f"provider {self.name!r}: preset {self.preset!r} needs an issuer")
        if self.preset == "entra" and not (self.issuer or self.tenant):
            raise ValueError(f"provider {self.name!r}: preset 'entra' needs a tenant")
        self.allowed_domains = [d.lower().lstrip("@") for d in self.allowed_domains]
        return self


class IdentitySettings(BaseModel):
    """Who may call the gateway and how it knows them. Field ``foo`` is ``MCPGW_FOO``."""

    bootstrap_api_key: SecretStr | None = Field(
        None,
        description="The first admin's API key. Unset: a key is generated and printed once.",
    )
    bootstrap_admin_email: str = Field(
        "admin@localhost", description="Email of the admin created on an empty database."
    )
    metrics_public: bool = Field(
        False,
        description="Serve /metrics without credentials (for a scraper on a private "
        "network); otherwise it needs a key with 'audit:read'.",
    )
    auth_cache_ttl_seconds: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="How long a verified API key is trusted from memory. Bounds how long a "
        "revocation takes to reach other gateway replicas.",
    )
    jwt_issuer: str | None = Field(
        None,
        description="Accept bearer JWTs from this issuer (its `iss`), besides API keys. "
        "Unset: only API keys.",
    )
    jwt_audience: str | None = Field(
        None, description="The `aud` a JWT must carry (required with MCPGW_JWT_ISSUER)."
    )
    jwt_jwks_url: str | None = Field(
        None,
        description="Where the issuer's signing keys are. Unset: its OpenID discovery "
        "document's `jwks_uri`.",
    )
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["RS256", "PS256", "ES256", "EdDSA"],
        description="Signature algorithms accepted from the issuer (comma-separated); "
        "HS256 only with MCPGW_JWT_SHARED_SECRET.",
    )
    jwt_shared_secret: SecretStr | None = Field(
        None,
        description="Also accept HS256 JWTs signed with this secret (simple set-ups; at "
        "least 32 bytes).",
    )
    jwt_leeway_seconds: float = Field(
        60.0, ge=0, le=600, description="Clock skew allowed on a JWT's `exp` and `nbf`."
    )
    jwt_create_users: bool = Field(
        False,
        description="Create a user on a JWT's first use (its `email` claim), if its domain "
        "is allowed; otherwise the user must exist.",
    )
    jwt_allowed_domains: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Email domains whose users MCPGW_JWT_CREATE_USERS may create "
        "(comma-separated; empty: any).",
    )
    jwt_role_claim: str = Field(
        "roles",
        description="Claim listing the caller's roles or groups; one that names a role "
        "(admin, operator, developer, viewer) sets a new user's role.",
    )
    public_url: str | None = Field(
        None,
        description="The gateway's public address (`https://host[:port]`) as clients reach "
        "it: OAuth metadata, token audiences and sign-in redirects use it. Unset: each "
        "request's own scheme and Host (fine on one host; set it behind a proxy).",
    )
    oauth_enabled: bool = Field(
        True,
        description="Be the OAuth 2.1 authorization server MCP clients discover on /mcp "
        "(RFC 9728, RFC 8414): they register, the user signs in, no key is pasted.",
    )
    oauth_authorization_server: str | None = Field(
        None,
        description="Delegate MCP authorization to this external authorization server "
        "(your identity provider's issuer URL): /mcp's metadata names it instead of the "
        "gateway, and its tokens are checked as MCPGW_JWT_* says. Unset: the gateway's own.",
    )
    oauth_registration_enabled: bool = Field(
        True, description="Let OAuth clients register themselves (RFC 7591)."
    )
    oauth_access_token_ttl_seconds: int = Field(
        3600, ge=60, le=86_400, description="Lifetime of an OAuth access token."
    )
    oauth_refresh_token_ttl_seconds: int = Field(
        30 * 86_400,
        ge=3600,
        le=365 * 86_400,
        description="Lifetime of an OAuth refresh token (rotated on every use).",
    )
    session_ttl_seconds: int = Field(
        12 * 3600,
        ge=300,
        le=30 * 86_400,
        description="Lifetime of a browser sign-in session (portal, consent pages).",
    )
    sso_providers: list[SsoProvider] = Field(
        default_factory=list,
        description="Identity providers for signing in (JSON list; presets oidc, github, "
        "google, entra, okta). See docs/authentication.md.",
    )
    key_last_used_flush_seconds: float = Field(
        15.0, gt=0, le=3600, description="How often last-used times of keys are written."
    )

    audit_enabled: bool = Field(
        True,
        description="Record every call and change in the audit trail. Off only to measure "
        "its cost: nothing is audited then.",
    )
    audit_retention_days: float = Field(
        90.0, ge=0, description="Delete audit rows older than this, daily (0: keep forever)."
    )
    audit_writer: Literal["process", "inline"] = Field(
        "process",
        description="Where a gateway masks, hashes and stores audit rows: `process` (a "
        "writer process it starts beside itself, so that work runs on another core) or "
        "`inline` (in the gateway's own process).",
    )
    audit_batch_size: int = Field(
        500, ge=1, le=10_000, description="Audit rows written per database insert."
    )
    audit_flush_seconds: float = Field(
        0.5, gt=0, le=60, description="Longest an audit row waits in memory before a write."
    )
    audit_queue_max: int = Field(
        100_000,
        ge=100,
        description="Audit rows queued in memory before calls wait for the writer.",
    )
    audit_queue_wait_seconds: float = Field(
        2.0,
        ge=0,
        le=60,
        description="Longest a call waits for room in a full audit queue (the row is kept "
        "either way).",
    )
    audit_write_retries: int = Field(
        5,
        ge=0,
        le=20,
        description="Retries (with backoff) of a failed audit write before its rows are "
        "spilled to a file in the data dir (read back once the database answers).",
    )

    tls_cert_file: Path | None = Field(
        None, description="Serve HTTPS with this certificate (PEM; with MCPGW_TLS_KEY_FILE)."
    )
    tls_key_file: Path | None = Field(None, description="The TLS certificate's private key.")
    tls_client_ca_file: Path | None = Field(
        None, description="CA certificates that sign agents' client certificates."
    )
    tls_client_auth: Literal["off", "optional", "required"] = Field(
        "off",
        description="Client certificates (mutual TLS): `optional` (a verified certificate "
        "whose email is a user's signs that user in; bearer tokens still work) or "
        "`required` (no TLS connection without one).",
    )

    secret_key: SecretStr | None = Field(
        None,
        description="Key (32+ chars) that encrypts stored server secrets. Unset: generated "
        "into data_dir/secret.key. Replicas sharing a database must share it.",
    )

    @property
    def own_authorization_server(self) -> bool:
        """The gateway issues OAuth tokens itself (not delegated, not off)."""
        return self.oauth_enabled and not self.oauth_authorization_server

    @property
    def advertises_oauth(self) -> bool:
        """/mcp tells clients where to authorize (RFC 9728): the gateway, or the
        external server it delegates to."""
        return self.oauth_enabled or bool(self.oauth_authorization_server)

    @field_validator("jwt_algorithms", "jwt_allowed_domains", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("public_url")
    @classmethod
    def _public_url_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as https://mcp.example.com")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("must be scheme://host[:port] only (the gateway serves from /)")
        return f"{parts.scheme}://{parts.netloc.lower()}"

    @field_validator("secret_key")
    @classmethod
    def _secret_key_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("bootstrap_api_key")
    @classmethod
    def _key_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (use `mgw_live_` + random)")
        return value

    @field_validator("bootstrap_admin_email")
    @classmethod
    def _email_shape(cls, value: str) -> str:
        if "@" not in value or any(c.isspace() for c in value):
            raise ValueError("must look like an email address")
        return value.lower()

    @field_validator("jwt_shared_secret")
    @classmethod
    def _jwt_secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes (HS256 keys shorter than its hash)")
        return value

    @model_validator(mode="after")
    def _jwt_complete(self) -> IdentitySettings:
        if self.jwt_issuer and not self.jwt_audience:
            raise ValueError(
                "MCPGW_JWT_AUDIENCE is required with MCPGW_JWT_ISSUER: a token must be "
                "meant for this gateway, not only signed by the issuer"
            )
        if self.jwt_shared_secret and not self.jwt_issuer:
            raise ValueError("MCPGW_JWT_SHARED_SECRET needs MCPGW_JWT_ISSUER (the `iss` to expect)")
        if self.oauth_authorization_server and not self.jwt_issuer:
            raise ValueError(
                "MCPGW_OAUTH_AUTHORIZATION_SERVER needs MCPGW_JWT_ISSUER and "
                "MCPGW_JWT_AUDIENCE: the gateway must be able to check the tokens that "
                "server issues"
            )
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("MCPGW_TLS_CERT_FILE and MCPGW_TLS_KEY_FILE go together")
        if self.tls_client_auth != "off" and not (self.tls_cert_file and self.tls_client_ca_file):
            raise ValueError(
                "MCPGW_TLS_CLIENT_AUTH needs MCPGW_TLS_CERT_FILE/KEY_FILE (the gateway "
                "terminates TLS) and MCPGW_TLS_CLIENT_CA_FILE (who signs client certificates)"
            )
        names = [p.name for p in self.sso_providers]
        if len(names) != len(set(names)):
            raise ValueError("MCPGW_SSO_PROVIDERS: provider names must be unique")
        unknown = set(self.jwt_algorithms) - JWT_ALGORITHMS
        if unknown:
            raise ValueError(
                f"MCPGW_JWT_ALGORITHMS: {sorted(unknown)} not accepted (asymmetric algorithms "
                "only; HS256 comes with MCPGW_JWT_SHARED_SECRET)"
            )
        return self
