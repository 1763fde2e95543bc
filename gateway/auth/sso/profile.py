"""Who signed in, as the provider tells it: email (and whether it is verified), name,
groups — read from verified ID token claims, the userinfo endpoint, Microsoft Graph
(Entra's group overage) or GitHub's user API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# GET/POST a URL with the access token; the JSON answer (the SSRF guard is the caller's).
Fetch = Callable[[str, str], Awaitable[Any]]

_GRAPH_HOSTS = ("graph.microsoft.com", "graph.windows.net")


@dataclass(frozen=True)
class Profile:
    """A person as an identity provider describes them."""

    subject: str
    email: str | None
    email_verified: bool | None
    name: str | None
    groups: tuple[str, ...] = ()


def from_claims(claims: Mapping[str, Any], group_claim: str) -> Profile:
    """A profile from OpenID claims (ID token, completed by userinfo)."""
    email = claims.get("email")
    if not isinstance(email, str) and claims.get("tid"):
        # Entra without the email claim: the UPN is the sign-in address.
        upn = claims.get("preferred_username")
        email = upn if isinstance(upn, str) and "@" in upn else None
    verified = claims.get("email_verified")
    groups = claims.get(group_claim)
    return Profile(
        subject=str(claims.get("sub", "")),
        email=email.lower() if isinstance(email, str) else None,
        # Entra issues no email_verified: the tenant owns its addresses.
        email_verified=verified if isinstance(verified, bool) else None,
        name=_text(claims.get("name")),
        groups=tuple(str(g) for g in groups) if isinstance(groups, list) else (),
    )


async def entra_overage_groups(
    claims: Mapping[str, Any], issuer: str, access_token: str, post: Fetch
) -> tuple[str, ...] | None:
    """Groups from Microsoft Graph when the ID token says there were too many to carry
    (``_claim_names.groups``); None when it carried them."""
    names = claims.get("_claim_names")
    if not isinstance(names, dict) or "groups" not in names:
        return None
    sources = claims.get("_claim_sources")
    source = sources.get(names["groups"]) if isinstance(sources, dict) else None
    endpoint = source.get("endpoint") if isinstance(source, dict) else None
    if not isinstance(endpoint, str):
        return ()
    host = urlsplit(endpoint).hostname or ""
    if host == "graph.windows.net":
        # Azure AD Graph is retired: the same question goes to Microsoft Graph.
        oid = claims.get("oid")
        endpoint = f"https://graph.microsoft.com/v1.0/users/{oid}/getMemberObjects"
    elif host not in _GRAPH_HOSTS and host != urlsplit(issuer).hostname:
        return ()  # an endpoint elsewhere would receive the person's access token
    found = await post(endpoint, access_token)
    values = found.get("value") if isinstance(found, dict) else None
    return tuple(str(v) for v in values) if isinstance(values, list) else ()


async def from_github(api: str, access_token: str, get: Fetch) -> Profile:
    """GitHub's user and (verified, primary) email, from its REST API."""
    user = await get(f"{api}/user", access_token)
    if not isinstance(user, dict) or "id" not in user:
        raise ValueError("GitHub's /user answered no user")
    email: str | None = None
    verified: bool | None = None
    emails = await get(f"{api}/user/emails", access_token)
    if isinstance(emails, list):
        primary = [e for e in emails if isinstance(e, dict) and e.get("primary")]
        if primary and isinstance(primary[0].get("email"), str):
            email, verified = primary[0]["email"].lower(), bool(primary[0].get("verified"))
    return Profile(
        subject=str(user["id"]),
        email=email,
        email_verified=verified,
        name=_text(user.get("name")) or _text(user.get("login")),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
