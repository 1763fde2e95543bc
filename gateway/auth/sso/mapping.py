"""From a provider's profile to a user of ours: who may sign in (verified email,
allowed domain, existing or creatable, approved), which role (group → role rules) and
which teams (``team:<name>`` groups), applied on every sign-in so the provider stays
the source of truth for what it manages."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.exc import IntegrityError

from gateway.auth.models import TeamMember, User
from gateway.auth.principal import Principal
from gateway.auth.rbac import Role
from gateway.auth.repository import IdentityRepository
from gateway.auth.service import IdentityService
from gateway.auth.sso.profile import Profile
from gateway.config_identity import ROLES, SsoProvider
from gateway.errors import Forbidden

# Highest first: a person in several mapped groups gets the strongest role.
_RANK = {role: i for i, role in enumerate(ROLES)}


class SignInRefused(Forbidden):
    """The provider vouched for the person, but they may not sign in here (yet)."""

    code = "sign_in_refused"


def mapped_role(provider: SsoProvider, groups: tuple[str, ...]) -> str | None:
    """The highest role the provider's group rules give these groups, or None."""
    roles = [provider.group_roles[g] for g in groups if g in provider.group_roles]
    return min(roles, key=_RANK.__getitem__) if roles else None


def mapped_teams(provider: SsoProvider, groups: tuple[str, ...]) -> list[str]:
    prefix = provider.team_prefix
    if not prefix:
        return []
    return sorted(
        {g[len(prefix) :] for g in groups if g.startswith(prefix) and len(g) > len(prefix)}
    )


def check_profile(provider: SsoProvider, profile: Profile) -> str:
    """The email the person signs in as, or :class:`SignInRefused` saying why not."""
    if not profile.email or "@" not in profile.email:
        raise SignInRefused(f"{provider.name} did not share a verified email address")
    if profile.email_verified is False:
        raise SignInRefused(f"the email address at {provider.name} is not verified")
    domain = profile.email.rsplit("@", 1)[1]
    if provider.allowed_domains and domain not in provider.allowed_domains:
        raise SignInRefused(f"accounts from {domain} may not sign in here")
    return profile.email


async def sign_in_user(
    identity: IdentityService, provider: SsoProvider, profile: Profile
) -> Principal:
    """The principal of the person ``profile`` describes, their user created or
    updated by ``provider``'s rules."""
    email = check_profile(provider, profile)
    role = mapped_role(provider, profile.groups)
    teams = mapped_teams(provider, profile.groups)
    actor = {"email": email, "auth_method": "session"}
    async with identity.db.session() as session:
        repo = IdentityRepository(session)
        user = await repo.get_user_by_email(email)
        if user is None:
            if not provider.create_users:
                raise SignInRefused(f"there is no account for {email} here; ask an admin")
            user = await _create(repo, provider, profile, email, role or provider.default_role)
            identity.audit.change(
                "user.create", None, user.id, new=_public(user, provider), actor=actor
            )
        elif role is not None and user.role != role:
            old = user.role
            user.role = role
            identity.audit.change(
                "user.update", None, user.id, old={"role": old}, new={"role": role}, actor=actor
            )
        for name in teams:
            team = await repo.get_team_by_name(name)
            if team is not None and await repo.get_membership(team.id, user.id) is None:
                await repo.add(TeamMember(team_id=team.id, user_id=user.id))
                identity.audit.change("team.member.add", None, team.id, new={"user": user.id})
        user_id, active = user.id, user.is_active
    identity.on_user_changed(user_id)
    if not active:
        raise SignInRefused(
            "your account is waiting for an admin's approval"
            if provider.approve_new_users
            else "your account is deactivated"
        )
    principal = await identity.principal_of(user_id, ("*",), "session")
    return replace(principal, name=principal.name or profile.name or email)


async def _create(
    repo: IdentityRepository, provider: SsoProvider, profile: Profile, email: str, role: str
) -> User:
    user = User(
        email=email,
        name=profile.name or email,
        role=Role(role),
        is_active=not provider.approve_new_users,
    )
    try:
        await repo.add(user)
    except IntegrityError:  # the same person signing in twice at once
        await repo.session.rollback()
        found = await repo.get_user_by_email(email)
        if found is None:
            raise
        return found
    return user


def _public(user: User, provider: SsoProvider) -> dict[str, object]:
    return {
        "email": user.email,
        "role": user.role,
        "is_active": user.is_active,
        "via": provider.name,
    }
