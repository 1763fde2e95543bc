"""Identity use cases: bootstrap, authenticate, users, teams, API keys.

Every method that acts for somebody takes the acting :class:`Principal` and
checks what it may do here, so the rules hold for REST, CLI and MCP alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from gateway.audit.service import AuditLog
from gateway.auth.keys import generate_key, hash_key, visible_prefix
from gateway.auth.minting import check_within_expiry, key_globs
from gateway.auth.models import ApiKey, Team, TeamMember, User
from gateway.auth.principal import Principal
from gateway.auth.rbac import Role, scopes_within
from gateway.auth.repository import IdentityRepository
from gateway.auth.schemas import (
    KeyCreate,
    MemberAdd,
    TeamCreate,
    TeamUpdate,
    UserCreate,
    UserUpdate,
)
from gateway.db import Database, utcnow
from gateway.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated

log = logging.getLogger("gateway.auth")


@dataclass(frozen=True)
class BootstrapOutcome:
    """What start-up did about the first admin. ``key`` is set only for a generated key."""

    created_admin: bool
    admin_email: str
    key: str | None = None
    installed_bootstrap_key: bool = False


@dataclass(frozen=True)
class TeamView:
    team: Team
    members: list[tuple[TeamMember, User]] | None = None


class IdentityService:
    def __init__(self, db: Database, audit: AuditLog | None = None) -> None:
        # Changes to users, teams and keys are audited (the composition root sets it).
        self.audit = audit or AuditLog.off()
        self.db = db
        # Called with a user id or key id whose cached authentication must be dropped.
        self.on_user_changed: Callable[[str], None] = lambda _user_id: None
        self.on_key_revoked: Callable[[str], None] = lambda _key_id: None

    # --- start-up ---------------------------------------------------------------------
    async def bootstrap(self, admin_email: str, bootstrap_key: str | None) -> BootstrapOutcome:
        """Make sure an active admin exists and that the bootstrap key (if any) is theirs.

        With no active admin (an empty database, or one where only an offline
        ``mcpgw admin create-key`` for a non-admin ran) the admin ``admin_email``
        is created (or promoted) with the bootstrap key, or a generated one.
        """
        try:
            async with self.db.session() as session:
                repo = IdentityRepository(session)
                admin = await repo.first_admin()
                if admin is None:
                    admin = await repo.get_user_by_email(admin_email)
                    if admin is None:
                        admin = User(email=admin_email, name="Administrator", role=Role.ADMIN)
                        await repo.add(admin)
                    else:
                        admin.role, admin.is_active = Role.ADMIN, True
                    key = bootstrap_key or generate_key()
                    await repo.add(self._new_key(admin.id, "bootstrap", key, ["*"], None))
                    return BootstrapOutcome(
                        created_admin=True,
                        admin_email=admin.email,
                        key=None if bootstrap_key else key,
                    )
                if bootstrap_key and await repo.get_key_by_hash(hash_key(bootstrap_key)) is None:
                    # A new MCPGW_BOOTSTRAP_API_KEY on an existing database: the operator
                    # controls the environment, so the key becomes the first admin's.
                    await repo.add(self._new_key(admin.id, "bootstrap", bootstrap_key, ["*"], None))
                    return BootstrapOutcome(False, admin.email, installed_bootstrap_key=True)
                return BootstrapOutcome(False, admin.email)
        except IntegrityError:
            # Another replica bootstrapped at the same moment; its admin stands.
            log.info("bootstrap raced with another process; keeping theirs")
            return BootstrapOutcome(False, admin_email)

    async def issue_key_offline(
        self,
        email: str,
        *,
        role: Role | None,
        name: str,
        scopes: list[str],
        expires_in_days: int | None,
    ) -> tuple[User, ApiKey, str, bool]:
        """Operator path (CLI on the database host): key for ``email``, creating the user.

        Returns the user, the key row, the secret and whether the user was created.
        """
        secret = generate_key()
        expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
        async with self.db.session() as session:
            repo = IdentityRepository(session)
            user = await repo.get_user_by_email(email)
            created = user is None
            if user is None:
                user = User(email=email.lower(), name="", role=role or Role.DEVELOPER)
                await repo.add(user)
            elif role is not None and user.role != role:
                user.role = role
            key = self._new_key(user.id, name, secret, scopes, expires_at)
            await repo.add(key)
        operator = {"auth_method": "cli"}  # whoever can reach the database directly
        if created:
            self.audit.change(
                "user.create", None, user.id, new=_user(user), actor=operator, route="cli"
            )
        self.audit.change("key.create", None, key.id, new=_key(key), actor=operator, route="cli")
        self.on_user_changed(user.id)
        return user, key, secret, created

    # --- authentication ---------------------------------------------------------------
    async def authenticate(self, token: str) -> Principal:
        """Resolve an API key to a principal, or raise :class:`Unauthenticated`."""
        async with self.db.session() as session:
            repo = IdentityRepository(session)
            key = await repo.get_key_by_hash(hash_key(token))
            if key is None or key.revoked_at is not None:
                raise Unauthenticated("invalid or revoked API key", code="invalid_api_key")
            if key.expires_at is not None and key.expires_at <= utcnow():
                raise Unauthenticated("API key expired", code="expired_api_key")
            user = await repo.get_user(key.user_id)
            if user is None or not user.is_active:
                raise Unauthenticated("the key's user is deactivated", code="user_inactive")
            teams = await repo.teams_of_user(user.id)
            return _principal(user, teams, tuple(key.scopes), key=key)

    async def principal_of(
        self, user_id: str, scopes: tuple[str, ...], auth_method: str
    ) -> Principal:
        """The principal of an active user signed in some other way (a browser session,
        an OAuth token); :class:`Unauthenticated` when the user is gone or deactivated."""
        async with self.db.session() as session:
            repo = IdentityRepository(session)
            user = await repo.get_user(user_id)
            if user is None or not user.is_active:
                raise Unauthenticated("the user is deactivated", code="user_inactive")
            teams = await repo.teams_of_user(user.id)
        return _principal(user, teams, scopes, auth_method=auth_method)

    async def authenticate_email(self, email: str, auth_method: str) -> Principal:
        """The principal of the existing, active user with ``email`` (a client
        certificate vouches for it); :class:`Unauthenticated` otherwise."""
        async with self.db.session() as session:
            user = await IdentityRepository(session).get_user_by_email(email)
        if user is None:
            raise Unauthenticated("no user with the certificate's email", code="unknown_user")
        return await self.principal_of(user.id, ("*",), auth_method)

    async def authenticate_claims(self, claims: Mapping[str, Any], rules: ClaimRules) -> Principal:
        """The user a verified external token speaks for (by its email claim), created
        on first use where ``rules`` allow; :class:`Unauthenticated` otherwise."""
        email = claims.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise Unauthenticated("token has no email claim", code="unknown_user")
        if claims.get("email_verified") is False:  # anyone could have typed it in
            raise Unauthenticated("the token's email is not verified", code="unknown_user")
        email = email.lower()
        async with self.db.session() as session:
            repo = IdentityRepository(session)
            user = await repo.get_user_by_email(email)
            if user is None:
                user = await self._create_federated(repo, email, claims, rules)
            if not user.is_active:
                raise Unauthenticated("the token's user is deactivated", code="user_inactive")
            teams = await repo.teams_of_user(user.id)
        return _principal(user, teams, _token_scopes(claims), auth_method="jwt")

    async def _create_federated(
        self, repo: IdentityRepository, email: str, claims: Mapping[str, Any], rules: ClaimRules
    ) -> User:
        domain = email.rsplit("@", 1)[1]
        if not rules.create_users or (rules.domains and domain not in rules.domains):
            raise Unauthenticated("no user with the token's email", code="unknown_user")
        named = claims.get(rules.role_claim)
        names = [named] if isinstance(named, str) else named if isinstance(named, list) else []
        role = next((r for r in Role if r.value in names), Role.VIEWER)
        name = claims.get("name")
        user = User(email=email, name=name if isinstance(name, str) else email, role=role)
        try:
            await repo.add(user)
        except IntegrityError:  # created meanwhile by another request
            await repo.session.rollback()
            found = await repo.get_user_by_email(email)
            if found is None:
                raise
            return found
        actor = {"email": email, "auth_method": "jwt"}
        self.audit.change("user.create", None, user.id, new=_user(user), actor=actor)
        return user

    async def record_key_use(self, last_used: Mapping[str, datetime]) -> None:
        async with self.db.session() as session:
            await IdentityRepository(session).touch_keys(last_used)

    # --- me ---------------------------------------------------------------------------
    async def me(self, principal: Principal) -> tuple[User, list[tuple[Team, str]], ApiKey | None]:
        async with self.db.session() as session:
            repo = IdentityRepository(session)
            user = await repo.get_user(principal.user_id)
            if user is None:
                raise Unauthenticated("user no longer exists")
            key = await repo.get_key(principal.key_id) if principal.key_id else None
            return user, list(await repo.teams_of_user(user.id)), key

    # --- users ------------------------------------------------------------------------
    async def create_user(self, principal: Principal, data: UserCreate) -> User:
        principal.require("users:write")
        async with self.db.session() as session:
            repo = IdentityRepository(session)
            if await repo.get_user_by_email(data.email):
                raise Conflict(f"a user with email {data.email!r} already exists")
            user = User(email=data.email, name=data.name, role=data.role)
            try:
                await repo.add(user)
            except IntegrityError as exc:
                raise Conflict(f"a user with email {data.email!r} already exists") from exc
        self.audit.change("user.create", principal, user.id, new=_user(user))
        return user

    async def list_users(
        self, principal: Principal, *, limit: int, offset: int
    ) -> tuple[list[User], int]:
        principal.require("users:read")
        async with self.db.session() as session:
            rows, total = await IdentityRepository(session).list_users(limit=limit, offset=offset)
            return list(rows), total

    async def get_user(self, principal: Principal, user_id: str) -> User:
        if user_id != principal.user_id:
            principal.require("users:read")
        async with self.db.session() as session:
            user = await IdentityRepository(session).get_user(user_id)
            if user is None:
                raise NotFound(f"no user with id {user_id!r}")
            return user

    async def update_user(self, principal: Principal, user_id: str, data: UserUpdate) -> User:
        principal.require("users:write")
        async with self.db.session() as session:
            repo = IdentityRepository(session)
            user = await repo.get_user(user_id)
            if user is None:
                raise NotFound(f"no user with id {user_id!r}")
            demoting_self = user.id == principal.user_id and (
                (data.role is not None and data.role != Role.ADMIN) or data.is_active is False
            )
            if demoting_self:
                raise Conflict("you cannot demote or deactivate yourself; ask another admin")
            old = _user(user)
            for field in ("name", "role", "is_active"):
                value = getattr(data, field)
                if value is not None:
                    setattr(user, field, value)
            await session.flush()
        self.audit.change("user.update", principal, user_id, old=old, new=_user(user))
        self.on_user_changed(user_id)
        return user

    # --- teams ------------------------------------------------------------------------
    async def create_team(self, principal: Principal, data: TeamCreate) -> Team:
        principal.require("teams:write")
        async with self.db.session() as session:
            repo = IdentityRepository(session)
            if await repo.get_team_by_name(data.name):
                raise Conflict(f"a team named {data.name!r} already exists")
            team = Team(
                name=data.name, description=data.description, interface_mode=data.interface_mode
            )
            try:
                await repo.add(team)
            except IntegrityError as exc:
                raise Conflict(f"a team named {data.name!r} already exists") from exc
        self.audit.change("team.create", principal, team.id, new=_team(team))
        return team

    async def list_teams(
        self, principal: Principal, *, limit: int, offset: int
    ) -> tuple[list[Team], int]:
        principal.require("teams:read")
        # Admins and operators see every team; everybody else the teams they belong to.
        member_id = None if principal.can("users:read") else principal.user_id
        async with self.db.session() as session:
            rows, total = await IdentityRepository(session).list_teams(
                limit=limit, offset=offset, member_id=member_id
            )
            return list(rows), total

    async def get_team(self, principal: Principal, team_id: str) -> TeamView:
        principal.require("teams:read")
        async with self.db.session() as session:
            repo = IdentityRepository(session)
            team = await repo.get_team(team_id) or await repo.get_team_by_name(team_id)
            if team is None or (
                not principal.can("users:read")
                and await repo.get_membership(team.id, principal.user_id) is None
            ):
                raise NotFound(f"no team {team_id!r}")
            return TeamView(team, list(await repo.list_members(team.id)))

    async def update_team(self, principal: Principal, team_id: str, data: TeamUpdate) -> TeamView:
        async with self.db.session() as session:
            repo = IdentityRepository(session)
            team = await self._team_for_manager(repo, principal, team_id)
            old = _team(team)
            if data.description is not None:
                team.description = data.description
            if "interface_mode" in data.model_fields_set:
                team.interface_mode = data.interface_mode
            await session.flush()
            members = list(await repo.list_members(team.id))
        self.audit.change("team.update", principal, team.id, old=old, new=_team(team))
        for member, _ in members:
            self.on_user_changed(member.user_id)
        return TeamView(team, members)

    async def _team_for_manager(
        self, repo: IdentityRepository, principal: Principal, team_id: str
    ) -> Team:
        team = await repo.get_team(team_id) or await repo.get_team_by_name(team_id)
        if team is None:
            raise NotFound(f"no team {team_id!r}")
        if principal.can("teams:write"):
            return team
        membership = await repo.get_membership(team.id, principal.user_id)
        if membership is None or membership.role != "owner" or not principal.can("teams:read"):
            raise Forbidden("only admins and the team's owners manage its members")
        return team

    async def add_member(self, principal: Principal, team_id: str, data: MemberAdd) -> TeamView:
        async with self.db.session() as session:
            repo = IdentityRepository(session)
            team = await self._team_for_manager(repo, principal, team_id)
            user = await repo.get_user(data.user_id)
            if user is None:
                raise InvalidInput(
                    f"no user with id {data.user_id!r}",
                    errors=[{"field": "user_id", "message": "unknown user"}],
                )
            existing = await repo.get_membership(team.id, user.id)
            old = None if existing is None else {"user_id": user.id, "role": existing.role}
            if existing is not None:
                existing.role = data.role
            else:
                await repo.add(TeamMember(team_id=team.id, user_id=user.id, role=data.role))
            await session.flush()
            members = list(await repo.list_members(team.id))
        self.audit.change(
            "team.member_add", principal, team.id, old=old,
            new={"user_id": data.user_id, "role": data.role},
        )  # fmt: skip
        self.on_user_changed(data.user_id)
        return TeamView(team, members)

    async def remove_member(self, principal: Principal, team_id: str, user_id: str) -> None:
        async with self.db.session() as session:
            repo = IdentityRepository(session)
            team = await self._team_for_manager(repo, principal, team_id)
            membership = await repo.get_membership(team.id, user_id)
            if membership is None:
                raise NotFound(f"user {user_id!r} is not a member of team {team.name!r}")
            await repo.delete(membership)
        self.audit.change(
            "team.member_remove", principal, team.id,
            old={"user_id": user_id, "role": membership.role},
        )  # fmt: skip
        self.on_user_changed(user_id)

    # --- keys -------------------------------------------------------------------------
    @staticmethod
    def _new_key(
        user_id: str, name: str, secret: str, scopes: list[str], expires_at: datetime | None
    ) -> ApiKey:
        return ApiKey(
            user_id=user_id,
            name=name,
            prefix=visible_prefix(secret),
            key_hash=hash_key(secret),
            scopes=scopes,
            expires_at=expires_at,
        )

    async def create_key(self, principal: Principal, data: KeyCreate) -> tuple[ApiKey, str]:
        """Mint a key; returns the stored row and the secret (shown once)."""
        principal.require("keys:write")
        owner_id = data.user_id or principal.user_id
        if owner_id != principal.user_id:
            principal.require("users:write")
        outside = scopes_within(data.scopes, principal.scopes)
        if outside:
            raise Forbidden(
                f"a key cannot grant more than the key creating it: {outside} not in "
                f"{list(principal.scopes)}"
            )
        if data.expires_at is not None and data.expires_in_days is not None:
            raise InvalidInput(
                "give expires_at or expires_in_days, not both",
                errors=[{"field": "expires_in_days", "message": "conflicts with expires_at"}],
            )
        expires_at = data.expires_at
        if data.expires_in_days is not None:
            expires_at = utcnow() + timedelta(days=data.expires_in_days)
        if expires_at is not None and expires_at <= utcnow():
            raise InvalidInput(
                "expires_at is in the past",
                errors=[{"field": "expires_at", "message": "must be in the future"}],
            )
        secret = generate_key()
        async with self.db.session() as session:
            repo = IdentityRepository(session)
            if principal.key_id is not None:
                minting = await repo.get_key(principal.key_id)
                limit = minting.expires_at if minting is not None else None
                check_within_expiry(expires_at, limit, data)
            if await repo.get_user(owner_id) is None:
                raise InvalidInput(
                    f"no user with id {owner_id!r}",
                    errors=[{"field": "user_id", "message": "unknown user"}],
                )
            key = self._new_key(
                owner_id, data.name, secret, list(dict.fromkeys(data.scopes)), expires_at
            )
            key.interface_mode = data.interface_mode
            key.tags = list(dict.fromkeys(data.tags)) or None
            key.tools_allow, key.tools_deny = key_globs(principal, data)
            await repo.add(key)
        self.audit.change("key.create", principal, key.id, new=_key(key))
        return key, secret

    async def list_keys(
        self,
        principal: Principal,
        *,
        user_id: str | None,
        all_users: bool,
        include_revoked: bool,
        limit: int,
        offset: int,
    ) -> tuple[list[ApiKey], int]:
        principal.require("keys:read")
        target: str | None = user_id or principal.user_id
        if all_users:
            target = None
        if target != principal.user_id:
            principal.require("users:write")
        async with self.db.session() as session:
            rows, total = await IdentityRepository(session).list_keys(
                limit=limit, offset=offset, user_id=target, include_revoked=include_revoked
            )
            return list(rows), total

    async def revoke_key(self, principal: Principal, key_id: str) -> ApiKey:
        principal.require("keys:write")
        async with self.db.session() as session:
            repo = IdentityRepository(session)
            key = await repo.get_key(key_id)
            if key is None or (key.user_id != principal.user_id and not principal.is_admin):
                raise NotFound(f"no key with id {key_id!r}")
            if key.revoked_at is None:
                key.revoked_at = utcnow()
                await session.flush()
        self.audit.change("key.revoke", principal, key_id, old=_key(key))
        self.on_key_revoked(key_id)
        return key

    async def key_ids_of_user(self, user_id: str) -> list[str]:
        async with self.db.session() as session:
            return list(await IdentityRepository(session).key_ids_of_user(user_id))


@dataclass(frozen=True, slots=True)
class ClaimRules:
    """How an external token's claims become a user (the ``MCPGW_JWT_*`` settings)."""

    create_users: bool = False
    domains: tuple[str, ...] = ()
    role_claim: str = "roles"


def _principal(
    user: User,
    teams: Sequence[tuple[Team, Any]],
    scopes: tuple[str, ...],
    *,
    key: ApiKey | None = None,
    auth_method: str = "api_key",
) -> Principal:
    """The principal of ``user`` (with their teams), by key or by external token."""
    team_mode = next((t.interface_mode for t, _ in teams if t.interface_mode), None)
    return Principal(
        user_id=user.id,
        email=user.email,
        name=user.name,
        role=user.role,
        key_id=key.id if key else None,
        scopes=scopes,
        team_ids=tuple(t.id for t, _ in teams),
        interface_mode=(key.interface_mode if key else None) or team_mode,
        key_prefix=key.prefix if key else None,
        auth_method=auth_method,
        team_names=tuple(t.name for t, _ in teams),
        key_tags=tuple(key.tags or ()) if key else (),
        tools_allow=tuple(key.tools_allow) if key and key.tools_allow is not None else None,
        tools_deny=tuple(key.tools_deny or ()) if key else (),
    )


def _token_scopes(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """The token's OAuth scopes that are ours (``tools:execute``…); none of ours: the
    role's full grants, as a key with scope ``*``."""
    raw = claims.get("scope", claims.get("scp"))
    items = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
    ours = tuple(s for s in items if isinstance(s, str) and (s == "*" or ":" in s))
    return ours or ("*",)


# What the audit trail keeps of a user, team or key (never a key's secret or hash).
def _user(user: User) -> dict[str, object]:
    return {"email": user.email, "name": user.name, "role": user.role, "is_active": user.is_active}


def _team(team: Team) -> dict[str, object]:
    return {
        "name": team.name,
        "description": team.description,
        "interface_mode": team.interface_mode,
    }


def _key(key: ApiKey) -> dict[str, object]:
    return {
        "user_id": key.user_id,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "tags": key.tags,
        "tools_allow": key.tools_allow,
        "tools_deny": key.tools_deny,
    }
