"""What each preset means: default scopes, label, issuer and endpoints.

GitHub, Google, Microsoft Entra ID and Okta differ in where their endpoints are and in
the shape of what they say about a person; everything else is the one OIDC flow."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config_identity import SsoProvider

LABELS = {
    "oidc": "single sign-on",
    "github": "GitHub",
    "google": "Google",
    "entra": "Microsoft",
    "okta": "Okta",
}
SCOPES = {
    "oidc": ["openid", "email", "profile"],
    "google": ["openid", "email", "profile"],
    # User.Read lets the access token read the user's groups from Microsoft Graph when
    # they are too many for the ID token (the "overage" case).
    "entra": ["openid", "email", "profile", "User.Read"],
    "okta": ["openid", "email", "profile", "groups"],
    # GitHub is OAuth 2.0 without OpenID Connect: the person comes from its API.
    "github": ["read:user", "user:email"],
}
GITHUB_AUTHORIZE = "https://github.com/login/oauth/authorize"
GITHUB_TOKEN_URL = "https://github.com/login/oauth/access_token"  # noqa: S105 (an URL)
GITHUB_API = "https://api.github.com"


@dataclass(frozen=True)
class Endpoints:
    """Where a provider's flow goes. ``issuer`` is None for OAuth-only GitHub."""

    authorize: str
    token: str
    issuer: str | None = None
    jwks: str | None = None
    userinfo: str | None = None
    api: str | None = None


def label(provider: SsoProvider) -> str:
    return provider.label or LABELS[provider.preset]


def scopes(provider: SsoProvider) -> list[str]:
    return provider.scopes or SCOPES[provider.preset]


def is_oidc(provider: SsoProvider) -> bool:
    return provider.preset != "github"


def issuer(provider: SsoProvider) -> str | None:
    """The OpenID issuer whose discovery document names the endpoints."""
    if provider.issuer:
        return provider.issuer.rstrip("/")
    if provider.preset == "google":
        return "https://accounts.google.com"
    if provider.preset == "entra":
        return f"https://login.microsoftonline.com/{provider.tenant}/v2.0"
    return None


def github_endpoints(provider: SsoProvider) -> Endpoints:
    return Endpoints(
        authorize=provider.authorize_url or GITHUB_AUTHORIZE,
        token=provider.token_url or GITHUB_TOKEN_URL,
        api=(provider.api_url or GITHUB_API).rstrip("/"),
    )
