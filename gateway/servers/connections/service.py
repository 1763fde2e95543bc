"""Use cases of the token vault: connect (OAuth or a secret), finish an OAuth
connection at the callback, list, disconnect; keep the in-memory vault in step with the
database. Refreshing lives in refresher.py.

Nothing of a token reaches a log line, an audit row or an error message: tokens live
sealed in ``connections.tokens_sealed`` and, unsealed, only in the in-memory vault.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.service import AuditLog
from gateway.auth.keys import hash_key
from gateway.auth.models import User
from gateway.auth.principal import Principal
from gateway.auth.web import safe_next
from gateway.crypto import SecretBox
from gateway.db import Database, utcnow
from gateway.errors import Conflict, Forbidden, InvalidInput, NotFound
from gateway.servers.connections.models import Connection, ConnectionFlow
from gateway.servers.connections.oauth import ConnectFailed, GrantRefused, OAuthApp, Tokens
from gateway.servers.connections.runtime import PerUserRuntime
from gateway.servers.connections.schemas import (
    ConnectionOut,
    ConnectionStart,
    ConnectionStarted,
    per_user_kind,
)
from gateway.servers.connections.vault import Credential, credential_headers
from gateway.servers.models import McpServer
from gateway.servers.service import ServerService, can_see

log = logging.getLogger("gateway.connections")

CALLBACK = "/auth/connections/callback"
BROWSER_START = "/auth/connections/start/{server}"
FLOW_TTL = timedelta(minutes=10)


class ConnectRefused(Exception):
    """An OAuth connection could not be finished; the message is safe to show."""


@dataclass(frozen=True)
class RefreshPolicy:
    """When tokens are refreshed (MCPGW_CONNECTIONS_* settings)."""

    margin: float = 300.0
    jitter: float = 30.0
    interval: float = 15.0
    max_failures: int = 3


class ConnectionService:
    """Users' connections to servers that take per-user credentials."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        servers: ServerService,
        oauth: OAuthApp,
        *,
        policy: RefreshPolicy | None = None,
        audit: AuditLog | None = None,
        public_url: str | None = None,
    ) -> None:
        self.db = db
        self.box = box
        self.servers = servers
        self.oauth = oauth
        self.policy = policy or RefreshPolicy()
        self.audit = audit or AuditLog.off()
        self.public_url = public_url.rstrip("/") if public_url else None
        self.vault = servers.pool.vault

    # --- what a caller without a connection is told ---------------------------------------
    def hint(self, server: str, kind: str, credential: Credential | None) -> str:
        """How to connect (or reconnect) ``server``: the tool error's text."""
        route = f"POST /api/v1/connections/{server}"
        if kind == "secret":
            how = f'{route} with {{"secret": "<your token>"}}'
            runtime = self.servers.pool.get(server)
            config = runtime.spec.config.get("credentials") if runtime is not None else None
            if config and config.get("instructions"):
                how += f" ({config['instructions']})"
        else:
            browser = (self.public_url or "") + BROWSER_START.format(server=server)
            how = (
                f"{route} (it answers the authorization URL to open), or open {browser} "
                "in a browser signed in to the gateway"
            )
        if credential is not None:
            why = credential.last_error or "the authorization was revoked or expired"
            return f"Your connection to server {server!r} is broken ({why}). Reconnect: {how}."
        return (
            f"Server {server!r} acts with each user's own credential and you have not "
            f"connected yours yet. Connect: {how}."
        )

    # --- the in-memory vault ------------------------------------------------------------
    async def sync(self) -> int:
        """Bring the vault in line with the database (other replicas' changes); reads and
        unseals only rows whose version changed. How many changed."""
        async with self.db.session() as session:
            listed = (
                await session.execute(
                    select(Connection.id, Connection.version, McpServer.version).join(
                        McpServer, McpServer.id == Connection.server_id
                    )
                )
            ).all()
            held = self.vault.versions()
            now = {cid: (v, sv) for cid, v, sv in listed}
            for cid in set(held) - set(now):
                self._forget(cid)
            changed = [cid for cid, version in now.items() if held.get(cid) != version]
            if changed:
                rows = await session.execute(
                    select(Connection, McpServer)
                    .join(McpServer, McpServer.id == Connection.server_id)
                    .where(Connection.id.in_(changed))
                )
                for connection, server in rows.all():
                    self._hold(connection, server)
        return len(changed) + len(set(held) - set(now))

    def _hold(self, connection: Connection, server: McpServer) -> None:
        try:
            headers = credential_headers(server.config, self.box.open(connection.tokens_sealed))
        except Exception:
            log.error("cannot unseal a connection", extra={"server": server.name})
            return
        previous = self.vault.get(server.name, connection.user_id)
        self.vault.put(
            Credential(
                connection_id=connection.id,
                user_id=connection.user_id,
                server=server.name,
                kind=connection.kind,
                status=connection.status,
                headers=headers,
                version=(connection.version, server.version),
                expires_at=connection.expires_at,
                last_error=connection.last_error,
            )
        )
        if connection.status == "broken" and previous is not None:
            self._close_session(server.name, connection.id)

    def _forget(self, connection_id: str) -> None:
        held = self.vault.by_id(connection_id)
        if held is not None:
            self._close_session(held.server, connection_id)
            self.vault.drop(connection_id)

    def _close_session(self, server: str, connection_id: str) -> None:
        runtime = self.servers.pool.get(server)
        if isinstance(runtime, PerUserRuntime):
            runtime.forget(connection_id)

    # --- servers ------------------------------------------------------------------------
    async def _server(self, session: AsyncSession, principal: Principal, name: str) -> McpServer:
        row = (await session.scalars(select(McpServer).where(McpServer.name == name))).first()
        if row is None or not can_see(principal, row.team_id):
            raise NotFound(f"no server named {name!r}", code="server_not_found")
        if row.type != "remote" or per_user_kind(row.config) is None:
            raise InvalidInput(
                f"server {name!r} does not take per-user credentials (its config has no "
                "`credentials`)",
                code="not_per_user",
            )
        return row

    def _client_secret(self, row: McpServer) -> str | None:
        return self.box.open(row.secrets_sealed).get("oauth", {}).get("client_secret")

    @staticmethod
    def _resource(row: McpServer) -> str:
        return str(row.config["credentials"].get("resource") or row.config["url"])

    # --- listing ------------------------------------------------------------------------
    async def list(
        self,
        principal: Principal,
        *,
        server: str | None = None,
        user_id: str | None = None,
        everyone: bool = False,
    ) -> list[ConnectionOut]:
        """The caller's connections; admins may ask for a user's or everyone's."""
        if (everyone or (user_id and user_id != principal.user_id)) and not principal.is_admin:
            raise Forbidden("only admins may list other users' connections")
        query = (
            select(Connection, McpServer.name, User.email)
            .join(McpServer, McpServer.id == Connection.server_id)
            .join(User, User.id == Connection.user_id)
            .order_by(McpServer.name, User.email)
        )
        if not everyone:
            query = query.where(Connection.user_id == (user_id or principal.user_id))
        if server is not None:
            query = query.where(McpServer.name == server)
        async with self.db.session() as session:
            rows = (await session.execute(query)).all()
        return [self._out(c, name, email) for c, name, email in rows]

    def _out(self, row: Connection, server: str, email: str | None) -> ConnectionOut:
        return ConnectionOut(
            id=row.id,
            server=server,
            user_id=row.user_id,
            email=email,
            kind=row.kind,
            status=self._status(row),
            expires_at=row.expires_at,
            failures=row.failures,
            last_error=row.last_error,
            created_at=row.created_at,
            updated_at=row.updated_at,
            refreshed_at=row.refreshed_at,
        )

    @staticmethod
    def _status(row: Connection) -> str:
        """``expiring``: a refresh is due and has not happened yet, or failed (the
        refresher retries until the token expires or the grant is refused for good)."""
        now = utcnow()
        if row.status == "active" and (
            row.failures > 0
            or (row.next_refresh_at is not None and row.next_refresh_at <= now)
            or (row.expires_at is not None and row.expires_at <= now)
        ):
            return "expiring"
        return row.status

    # --- connecting ---------------------------------------------------------------------
    async def start(
        self, principal: Principal, server: str, body: ConnectionStart, base: str
    ) -> ConnectionStarted:
        """Connect ``server`` for the caller: store a secret, or begin the OAuth flow
        (the authorization URL to open, valid :data:`FLOW_TTL`)."""
        principal.require("tools:execute")
        async with self.db.session() as session:
            row = await self._server(session, principal, server)
        kind = per_user_kind(row.config)
        if kind == "secret":
            if not body.secret:
                raise InvalidInput(
                    f'server {server!r} takes a secret: send {{"secret": "..."}}',
                    errors=[{"field": "secret", "message": "required for this server"}],
                )
            saved = await self.save(row, principal.user_id, "secret", secret=body.secret)
            self.audit.change(
                "connection.create",
                principal,
                server,
                new={"kind": "secret", "user": principal.email},
            )
            return ConnectionStarted(
                server=server, kind="secret", connection=self._out(saved, server, principal.email)
            )
        if body.secret:
            raise InvalidInput(
                f"server {server!r} connects with OAuth: send no secret",
                errors=[{"field": "secret", "message": "not for an OAuth server"}],
            )
        url = await self._begin_oauth(row, principal.user_id, base, safe_next(body.next))
        return ConnectionStarted(
            server=server,
            kind="oauth",
            authorization_url=url,
            expires_in=int(FLOW_TTL.total_seconds()),
        )

    async def start_in_browser(self, principal: Principal, server: str, base: str) -> str:
        """The authorization URL for a signed-in browser (``/auth/connections/start``)."""
        principal.require("tools:execute")
        async with self.db.session() as session:
            row = await self._server(session, principal, server)
        if per_user_kind(row.config) != "oauth":
            raise InvalidInput(f"server {server!r} takes a secret, not a browser sign-in")
        return await self._begin_oauth(row, principal.user_id, base, "/")

    async def _begin_oauth(self, row: McpServer, user_id: str, base: str, next_path: str) -> str:
        config = row.config["credentials"]
        try:
            endpoints = await self.oauth.endpoints(row.config["url"], config)
        except ConnectFailed as exc:
            raise Conflict(str(exc), code="provider_unavailable") from None
        state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(64)
        redirect_uri = base.rstrip("/") + CALLBACK
        async with self.db.session() as session:
            session.add(
                ConnectionFlow(
                    state_hash=hash_key(state),
                    user_id=user_id,
                    server_id=row.id,
                    verifier=verifier,
                    redirect_uri=redirect_uri,
                    next_path=next_path,
                    expires_at=utcnow() + FLOW_TTL,
                )
            )
        return await self.oauth.authorization_url(
            endpoints, config, redirect_uri, state, verifier, self._resource(row)
        )

    async def finish(self, params: dict[str, str], browser_user: str | None) -> tuple[str, str]:
        """The OAuth callback: (server, where to go next) once the tokens are stored;
        :class:`ConnectRefused` for a forged, replayed, expired or foreign state, a
        denial, or a code the provider will not exchange."""
        flow = await self._spend(params.get("state"))
        if browser_user is not None and not hmac.compare_digest(browser_user, flow.user_id):
            raise ConnectRefused(
                "this connection was started by another user than the one signed in here"
            )
        async with self.db.session() as session:
            row = await session.get(McpServer, flow.server_id)
            user = await session.get(User, flow.user_id)
        if row is None or user is None or per_user_kind(row.config) != "oauth":
            raise ConnectRefused("this server no longer takes OAuth connections")
        if "error" in params:
            reason = (params.get("error_description") or params["error"])[:200]
            raise ConnectRefused(f"{row.name!r} was not connected: {reason}")
        code = params.get("code")
        if not code:
            raise ConnectRefused("the authorization server sent no code")
        config = row.config["credentials"]
        try:
            endpoints = await self.oauth.endpoints(row.config["url"], config)
            if endpoints.issuer and "iss" in params and params["iss"] != endpoints.issuer:
                raise ConnectRefused("the answer came from another issuer than the one asked")
            tokens = await self.oauth.exchange(
                endpoints,
                config,
                self._client_secret(row),
                flow.redirect_uri,
                code,
                flow.verifier,
                self._resource(row),
            )
        except ConnectRefused:
            raise
        except GrantRefused as exc:
            raise ConnectRefused(
                f"the authorization server refused the code ({exc.error})"
            ) from None
        except Exception as exc:
            log.warning("connecting %s failed: %s", row.name, type(exc).__name__)
            raise ConnectRefused(f"could not connect {row.name!r}; try again") from None
        await self.save(row, user.id, "oauth", tokens=tokens)
        actor = {"user_id": user.id, "email": user.email, "auth_method": "oauth-callback"}
        self.audit.change(
            "connection.create",
            None,
            row.name,
            new={"kind": "oauth", "user": user.email},
            actor=actor,
        )
        await self.servers.connect(row.name, wait=False)  # its tools, read as this user
        return row.name, flow.next_path

    async def _spend(self, state: str | None) -> ConnectionFlow:
        refused = ConnectRefused("this connection link is invalid, expired or already used")
        if not state:
            raise refused
        digest = hash_key(state)
        async with self.db.session() as session:
            flow = await session.get(ConnectionFlow, digest)
            if flow is None or flow.expires_at <= utcnow():
                raise refused
            spent = await session.execute(
                update(ConnectionFlow)
                .where(ConnectionFlow.state_hash == digest, ConnectionFlow.used_at.is_(None))
                .values(used_at=utcnow())
            )
            if spent.rowcount != 1:  # type: ignore[attr-defined]
                raise refused
            return flow

    async def save(
        self,
        row: McpServer,
        user_id: str,
        kind: str,
        *,
        tokens: Tokens | None = None,
        secret: str | None = None,
    ) -> Connection:
        """Create or replace the user's connection to ``row``; the vault holds it."""
        sealed = (
            {"secret": {"value": secret or ""}}
            if tokens is None
            else {"token": tokens.sealed_form()}
        )
        async with self.db.session() as session:
            found = (
                await session.scalars(
                    select(Connection).where(
                        Connection.user_id == user_id, Connection.server_id == row.id
                    )
                )
            ).first()
            if found is None:
                found = Connection(user_id=user_id, server_id=row.id, version=0)
                session.add(found)
            found.kind = kind
            found.tokens_sealed = self.box.seal(sealed)
            found.expires_at = tokens.expires_at if tokens else None
            found.next_refresh_at = self.next_refresh(tokens.expires_at) if tokens else None
            found.status, found.failures, found.last_error = "active", 0, None
            found.version = (found.version or 0) + 1
            found.updated_at = found.refreshed_at = utcnow()
            if found.created_at is None:
                found.created_at = utcnow()
        self._hold(found, row)
        return found

    def next_refresh(self, expires_at: datetime | None) -> datetime | None:
        """When to refresh a token expiring at ``expires_at``: the margin before it (at
        most half its remaining life), minus a random jitter (at most a quarter)."""
        if expires_at is None:
            return None
        left = max((expires_at - utcnow()).total_seconds(), 0.0)
        margin = min(self.policy.margin, left / 2)
        jitter = secrets.SystemRandom().uniform(0, min(self.policy.jitter, left / 4))
        return expires_at - timedelta(seconds=margin + jitter)

    # --- disconnecting ------------------------------------------------------------------
    async def delete(self, principal: Principal, server: str, user_id: str | None = None) -> None:
        """Forget the caller's connection to ``server`` (an admin: anyone's)."""
        user_id = user_id or principal.user_id
        if user_id != principal.user_id and not principal.is_admin:
            raise Forbidden("only admins may disconnect other users")
        async with self.db.session() as session:
            row = await self._server(session, principal, server)
            found = (
                await session.scalars(
                    select(Connection).where(
                        Connection.user_id == user_id, Connection.server_id == row.id
                    )
                )
            ).first()
            if found is None:
                raise NotFound(f"no connection to {server!r}", code="connection_not_found")
            await session.delete(found)
            connection_id = found.id
        self._forget(connection_id)
        self.audit.change("connection.delete", principal, server, old={"user_id": user_id})
