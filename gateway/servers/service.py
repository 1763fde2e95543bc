"""Use cases of pillar 1: register, change and remove servers; list and call their tools.

The registry lives in the database; the live view (specs with decrypted secrets,
runtimes, health) lives in the :class:`SessionPool`. ``execute`` reads only memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy.exc import IntegrityError

from gateway.audit.service import AuditLog
from gateway.auth.principal import Principal
from gateway.crypto import SecretBox
from gateway.db import Database, utcnow
from gateway.errors import Conflict, Forbidden, InvalidInput, NotFound
from gateway.observability.masking import MASK
from gateway.policy.engine import CompiledPolicy
from gateway.policy.limits import Limiter
from gateway.policy.service import PolicyService
from gateway.servers import upkeep
from gateway.servers.availability import Availability, Unavailable
from gateway.servers.calls import CallTarget, qualified, resolve_target
from gateway.servers.catalog import add_to_catalog
from gateway.servers.connections.runtime import PerUserRuntime
from gateway.servers.connections.schemas import per_user_kind, take_client_secret
from gateway.servers.controls import ArgumentsSize
from gateway.servers.limits import RequestLimits, stored_limits
from gateway.servers.listing import catalog_page
from gateway.servers.models import CatalogEntry, McpServer, ServerVersion
from gateway.servers.pipeline import (
    Authorize,
    Call,
    CallContext,
    CallResult,
    Pipeline,
)
from gateway.servers.pool import SessionPool
from gateway.servers.reach import reach
from gateway.servers.repository import ServerRepository
from gateway.servers.runtimes.base import (
    BackendError,
    Catalog,
    Health,
    ServerRuntime,
    ServerSpec,
)
from gateway.servers.runtimes.isolation import forget
from gateway.servers.schemas import ServerCreate, ServerUpdate
from gateway.servers.transforming import ServerTransforms, follow_transforms
from gateway.servers.transforms import join_config, split_config, stored_transforms
from gateway.servers.validation import opts_out_of_isolation, snapshot, validate_config

if TYPE_CHECKING:
    from gateway.servers.resilience.stage import Resilience

log = logging.getLogger("gateway.servers")


def can_see(principal: Principal, team_id: str | None) -> bool:
    """Team-scoped servers are for their team (and admins); the rest for everyone."""
    return team_id is None or principal.is_admin or team_id in principal.team_ids


class ServerService:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        pool: SessionPool,
        *,
        call_timeout: float,
        default_concurrency: int,
        allow_private_urls: bool,
        max_request_bytes: int | None = None,
        pipeline: Pipeline | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.db = db
        # Resource reads, prompt gets and changes to servers (tool calls: the pipeline).
        self.audit = audit or AuditLog.off()
        # The stages every call of a server's tool passes (pipeline.py), whatever its path.
        self.pipeline = pipeline or Pipeline({"authorize": Authorize()})
        # The policy in force and its limits, counted (set by the composition root).
        self.policies: PolicyService | None = None
        self.limiter: Limiter | None = None
        # The breakers and retry plans (the pipeline's breaker stage, resilience/).
        self.resilience: Resilience | None = None
        # Called with every server's spec after each load (the registry may have changed).
        self.spec_listeners: list[Callable[[list[ServerSpec]], None]] = []
        self.box = box
        self.pool = pool
        # The global request limits; a server's or tool's own override them (limits.py).
        self.call_timeout = call_timeout
        self.max_request_bytes = max_request_bytes
        self.default_concurrency = default_concurrency
        self.allow_private_urls = allow_private_urls
        self._refreshing: dict[str, asyncio.Lock] = {}
        self._loading = asyncio.Lock()
        # The catalog in memory, by server name: what agents list without a DB read.
        self.catalogs: dict[str, Catalog] = {}
        self.catalog_version = 0  # bumped on every change, for caches built on top
        # What is known to be unavailable (listed all the same, marked: availability.py).
        self.availability = Availability(self._availability_changed)
        # Search keywords admins added, by server and tool (see set_keywords).
        self.keywords: dict[str, dict[str, tuple[str, ...]]] = {}
        # Servers' tool transforms (transforming.py), only of servers that have any.
        self.transforms: dict[str, ServerTransforms] = {}
        self._catalog_digest = ""
        # Called (no arguments) after the in-memory catalog changed.
        self.catalog_listeners: list[Callable[[], Awaitable[None]]] = []
        # Called with (server, uri) when a backend says a subscribed resource changed.
        self.resource_listeners: list[Callable[[str, str], Awaitable[None]]] = []
        self._background: set[asyncio.Task[Any]] = set()

    # --- specs: database rows → in-memory runtime definitions -------------------------
    def to_spec(self, row: McpServer) -> ServerSpec:
        sealed = self.box.open(row.secrets_sealed)
        return ServerSpec(
            id=row.id,
            name=row.name,
            type=row.type,
            config=split_config(row.config)[0],
            env=dict(row.env or {}),
            secret_env=dict(sealed.get("env", {})),
            secret_headers=dict(sealed.get("headers", {})),
            version=row.version,
            max_concurrency=row.max_concurrency or self.default_concurrency,
            team_id=row.team_id,
            enabled=row.enabled,
            limits=RequestLimits.parse(row.limits),
        )

    async def load(self) -> None:
        """Bring the pool in line with the database (start-up, after a change, and the
        periodic reconcile). One at a time: a reconcile that overlapped a change (whose
        load waits for the old runtime to stop) would build a second runtime, one of them
        never stopped, or, having read the rows first, install the older version last."""
        async with self._loading:
            await self._load()

    async def _load(self) -> None:
        async with self.db.session() as session:
            rows = await ServerRepository(session).all()
        specs = []
        for row in rows:
            try:
                specs.append(self.to_spec(row))
            except Exception as exc:
                log.error("cannot load server", extra={"server": row.name, "error": str(exc)})
        # A rebuilt server starts afresh: its old runtime's health and breakers (reset
        # at its next call) say nothing of the new one.
        for name in await self.pool.sync(specs):
            self.availability.forget(name)
        self.availability.retain(s.name for s in specs if s.enabled)
        # The size check is a stage only while some server has a size limit of its own
        # (installed or removed when that changes, not at every reconcile).
        bounded = any(s.enabled and s.limits is not None and s.limits.bounds_size for s in specs)
        if bounded != ("size" in self.pipeline.names):
            self.pipeline.install("size", ArgumentsSize() if bounded else None)
        self.transforms = follow_transforms(self.pipeline, rows)
        await self._load_catalogs({s.id: s.name for s in specs if s.enabled})
        for listener in self.spec_listeners:
            listener(specs)

    async def _load_catalogs(self, names: dict[str, str]) -> None:
        async with self.db.session() as session:
            entries, _ = await ServerRepository(session).catalog(
                server_ids=list(names), kind=None, limit=10_000_000
            )
        digest = hashlib.sha256(
            "".join(
                f"{s}/{e.kind}/{e.name}/{e.definition_hash}/{e.keywords};" for e, s in entries
            ).encode()
            + ",".join(sorted(names.values())).encode()
            # What agents see of a catalog changes with its server's transforms too.
            + "".join(f"{n}:{t.signature};" for n, t in sorted(self.transforms.items())).encode()
        ).hexdigest()
        if digest == self._catalog_digest:
            return  # nothing changed since we last looked (the common case)
        fresh: dict[str, Catalog] = {name: Catalog() for name in names.values()}
        keywords: dict[str, dict[str, tuple[str, ...]]] = {}
        for entry, server in entries:
            if entry.keywords:
                keywords.setdefault(server, {})[entry.name] = tuple(map(str, entry.keywords))
            try:
                add_to_catalog(fresh[server], entry.kind, entry.definition)
            except Exception:
                log.warning("skipping unreadable catalog entry", extra={"server": server})
        self.catalogs, self.keywords = fresh, keywords
        self._catalog_digest = digest
        self._catalog_changed()

    async def warm_up(self) -> None:
        """Fill the catalog of enabled servers that have none yet (e.g. a fresh install's
        essentials), in the background."""
        async with self.db.session() as session:
            repo = ServerRepository(session)
            counts = await repo.tool_counts()
            names = [r.name for r in await repo.all() if r.enabled and r.id not in counts]
        for name in names:
            self._spawn(self.on_list_changed(name))

    def _catalog_changed(self) -> None:
        self.catalog_version += 1
        for listener in list(self.catalog_listeners):
            self._spawn(listener())

    async def connect(self, name: str, *, wait: bool) -> None:
        """Connect a (re)registered server and load its catalog, now or in the background.
        A failure to connect is not an error here: the server's health says why."""
        if self.pool.get(name) is None:
            return
        if wait:
            with contextlib.suppress(BackendError):
                await self.refresh(name)
        else:
            self._spawn(self.on_list_changed(name))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- visibility -------------------------------------------------------------------
    def visible_runtime(self, principal: Principal, name: str) -> ServerRuntime | None:
        """The enabled server ``name`` if this caller may use it (one dict lookup); for a
        server whose users bring their own credential, the caller's own session (or one
        that says how to connect): every entry point resolves through here."""
        runtime = self.pool.get(name)
        if runtime is None or not can_see(principal, runtime.spec.team_id):
            return None
        if type(runtime) is PerUserRuntime:  # the only extra step for ordinary servers
            return runtime.for_caller(principal)
        return runtime

    async def _get_row(self, session: Any, principal: Principal, name: str) -> McpServer:
        row = await ServerRepository(session).get_by_name(name)
        if row is None or not can_see(principal, row.team_id):
            raise NotFound(f"no server named {name!r}", code="server_not_found")
        return row

    # --- registration -----------------------------------------------------------------
    async def _validate(
        self, server_type: str, config: dict[str, Any], principal: Principal
    ) -> dict[str, Any]:
        return await validate_config(
            self.db, server_type, config, principal, allow_private_urls=self.allow_private_urls
        )

    def _sealed_names(self, row: McpServer) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.box.open(row.secrets_sealed).items()}

    async def register(self, principal: Principal, data: ServerCreate) -> McpServer:
        principal.require("servers:write")
        limits = stored_limits(data.limits, self.max_request_bytes)
        config, client_secret = take_client_secret(
            await self._validate(data.type, data.config, principal)
        )
        config = join_config(config, stored_transforms(data.transforms, None))
        if data.team_id and not (principal.is_admin or data.team_id in principal.team_ids):
            raise Forbidden("you can only register servers for teams you belong to")
        sealed = {"env": data.secrets, "headers": data.secret_headers}
        if client_secret:
            sealed["oauth"] = {"client_secret": client_secret}
        unisolated = opts_out_of_isolation(data.type, config)
        row = McpServer(
            name=data.name,
            type=data.type,
            config=config,
            env=data.env,
            secrets_sealed=self.box.seal(sealed) if any(sealed.values()) else None,
            description=data.description,
            tags=data.tags,
            enabled=data.enabled,
            max_concurrency=data.max_concurrency,
            limits=limits,
            owner_id=principal.user_id,
            team_id=data.team_id,
            version=1,
        )
        name_taken = InvalidInput(
            f"name: a server named {data.name!r} already exists",
            code="name_taken",
            errors=[{"field": "name", "message": "already registered"}],
        )
        quotas = self.policies.quotas if self.policies is not None else None
        lock = quotas.lock(data.team_id) if quotas else contextlib.nullcontext()
        try:  # the team's max_servers: checked, and held until the row is committed
            async with lock, self.db.session() as session:
                repo = ServerRepository(session)
                if await repo.get_by_name(data.name) is not None:
                    raise name_taken
                if quotas is not None:
                    await quotas.check(session, data.team_id, "servers")
                await repo.add(row)
                names = {"env": list(data.secrets), "headers": list(data.secret_headers)}
                await repo.add(
                    ServerVersion(
                        server_id=row.id,
                        version=1,
                        snapshot=snapshot(row, names),
                        summary="registered without isolation" if unisolated else "registered",
                        changed_by=principal.user_id,
                    )
                )
        except IntegrityError:
            raise name_taken from None
        await self.load()
        self.audit.change("server.create", principal, row.name, new=snapshot(row, names))
        log.info("server registered", extra={"server": row.name, "type": row.type})
        if unisolated:
            log.warning(
                "server registered without isolation: it runs as a host process",
                extra={"server": row.name, "by": principal.user_id},
            )
        return row

    async def update(self, principal: Principal, name: str, data: ServerUpdate) -> McpServer:
        principal.require("servers:write")
        limits = stored_limits(data.limits, self.max_request_bytes)
        async with self.db.session() as session:
            row = await self._get_row(session, principal, name)
            before = snapshot(row, self._sealed_names(row))
            changes = []
            sealed = self.box.open(row.secrets_sealed)
            transforms = split_config(row.config)[1]
            if data.transforms is not None:
                catalog = self.catalogs.get(name)
                fresh = stored_transforms(data.transforms, catalog.tools if catalog else None)
                if fresh != transforms:
                    transforms = fresh
                    changes.append("transforms")
            if data.config is not None:
                row.config, client_secret = take_client_secret(
                    await self._validate(row.type, data.config, principal)
                )
                if client_secret:
                    sealed["oauth"] = {"client_secret": client_secret}
                elif per_user_kind(row.config) != "oauth":
                    sealed.pop("oauth", None)
                changes.append("config")
            if "config" in changes or "transforms" in changes:
                row.config = join_config(row.config, transforms)
            for field in ("description", "tags", "enabled", "env", "max_concurrency"):
                value = getattr(data, field)
                if value is not None and value != getattr(row, field):
                    setattr(row, field, value)
                    changes.append(field)
            if data.limits is not None and limits != row.limits:
                row.limits = limits
                changes.append("limits")
            for key, patch in (("env", data.secrets), ("headers", data.secret_headers)):
                if patch:
                    current = dict(sealed.get(key, {}))
                    for secret_name, value in patch.items():
                        if value is None:
                            current.pop(secret_name, None)
                        else:
                            current[secret_name] = value
                    sealed[key] = current
                    changes.append("secrets" if key == "env" else "secret_headers")
            if not changes:
                return row
            row.secrets_sealed = self.box.seal(sealed) if any(sealed.values()) else None
            row.version += 1
            row.updated_at = utcnow()
            names = {k: list(v) for k, v in sealed.items()}
            await ServerRepository(session).add(
                ServerVersion(
                    server_id=row.id,
                    version=row.version,
                    snapshot=snapshot(row, names),
                    summary="changed " + ", ".join(dict.fromkeys(changes)),
                    changed_by=principal.user_id,
                )
            )
        await self.load()
        self.audit.change(
            "server.update", principal, row.name, old=before, new=snapshot(row, names)
        )
        return row

    async def remove(self, principal: Principal, name: str) -> None:
        principal.require("servers:write")
        async with self.db.session() as session:
            row = await self._get_row(session, principal, name)
            before = snapshot(row, self._sealed_names(row))
            await ServerRepository(session).delete(row)
        self.audit.change("server.delete", principal, name, old=before)
        await self.pool.remove(name)
        # Its private home and package cache (isolated package servers) go with it.
        await asyncio.to_thread(forget, self.pool.ctx.data_dir, row.id)
        self.catalogs = {k: v for k, v in self.catalogs.items() if k != name}
        self._catalog_changed()
        await self.load()  # bundles referencing it are rebuilt without it

    # --- reading ----------------------------------------------------------------------
    async def list_servers(
        self, principal: Principal, *, limit: int, offset: int
    ) -> tuple[list[McpServer], int, dict[str, int]]:
        principal.require("servers:read")
        teams = None if principal.is_admin else list(principal.team_ids)
        async with self.db.session() as session:
            repo = ServerRepository(session)
            rows, total = await repo.list_servers(limit=limit, offset=offset, team_ids=teams)
            return list(rows), total, await repo.tool_counts()

    async def get(self, principal: Principal, name: str) -> tuple[McpServer, int]:
        principal.require("servers:read")
        async with self.db.session() as session:
            row = await self._get_row(session, principal, name)
            return row, (await ServerRepository(session).tool_counts()).get(row.id, 0)

    async def versions(self, principal: Principal, name: str) -> list[ServerVersion]:
        principal.require("servers:read")
        async with self.db.session() as session:
            row = await self._get_row(session, principal, name)
            return list(await ServerRepository(session).versions(row.id))

    def secret_names(self, row: McpServer) -> dict[str, dict[str, str]]:
        try:
            sealed = self.box.open(row.secrets_sealed)
        except Exception:
            return {"env": {}, "headers": {}}
        return {k: dict.fromkeys(sealed.get(k, {}), MASK) for k in ("env", "headers")}

    def health(self, row: McpServer) -> Health:
        runtime = self.pool.get(row.name)
        if runtime is not None:
            return runtime.health
        return Health(
            status="stopped" if not row.enabled else row.status,  # type: ignore[arg-type]
            last_error=row.last_error,
            latency_ms=row.latency_ms,
            checked_at=row.checked_at,
        )

    async def catalog(
        self,
        principal: Principal,
        *,
        server: str | None = None,
        kind: str | None = "tool",
        query: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[tuple[CatalogEntry, str]], int]:
        """A page of the catalog ``principal`` may see (listing.py)."""
        return await catalog_page(self, principal, server, kind, query, limit, offset)

    async def set_keywords(
        self, principal: Principal, name: str, tool: str, keywords: list[str]
    ) -> CatalogEntry:
        """Set the search keywords of one of a server's tools (admins' hints to tool
        search, weighed like the tool's name); other replicas see them at their next
        catalog reload."""
        principal.require("servers:write")
        async with self.db.session() as session:
            row = await self._get_row(session, principal, name)
            entry = await ServerRepository(session).set_keywords(row.id, tool, keywords)
            if entry is None:
                raise NotFound(f"server {name!r} has no tool {tool!r}", code="tool_not_found")
            old = self.keywords.get(name, {}).get(tool, ())
        self.audit.change(
            "tool.keywords", principal, qualified(name, tool), old=list(old), new=keywords
        )
        tools = {t: k for t, k in self.keywords.get(name, {}).items() if t != tool}
        if keywords:
            tools[tool] = tuple(keywords)
        self.keywords = {**self.keywords, name: tools}
        self._catalog_changed()  # views (and their search indexes) are rebuilt
        return entry

    # --- catalog refresh and availability (upkeep.py) ---------------------------------
    async def refresh(self, name: str) -> tuple[int, int, int]:
        """Fetch every list from the live server and store it; (added, changed, removed)."""
        return await upkeep.refresh(self, name)

    async def refresh_for(self, principal: Principal, name: str) -> tuple[int, int, int]:
        principal.require("servers:write")
        async with self.db.session() as session:
            await self._get_row(session, principal, name)
        try:
            return await self.refresh(name)
        except BackendError as exc:
            raise Conflict(str(exc), code="server_unavailable") from None

    async def on_list_changed(self, name: str, *, announced: bool = False) -> None:
        """Runtime callback: a server connected or announced a list change."""
        name = name.split(".", 1)[0]  # a bundle member ("bundle.member") refreshes its bundle
        if announced:
            # Pass the news on at once (agents re-list; the refresh below lands within
            # milliseconds and is announced again if it changed what they see).
            for listener in list(self.catalog_listeners):
                self._spawn(listener())
        try:
            await self.refresh(name)
        except Exception as exc:
            log.warning("catalog refresh failed", extra={"server": name, "error": str(exc)})

    async def on_resource_updated(self, server: str, uri: str) -> None:
        """Runtime callback: a subscribed resource changed on a backend."""
        server = server.split(".", 1)[0]
        for listener in list(self.resource_listeners):
            try:
                await listener(server, uri)
            except Exception:
                log.debug("resource update listener failed", exc_info=True)

    async def on_health_changed(self, name: str, health: Health) -> None:
        """Runtime callback: a server's health changed (marked and persisted, upkeep.py)."""
        await upkeep.on_health_changed(self, name, health)

    def _availability_changed(self) -> None:
        """Marks changed (availability.py): agents are told to list again."""
        with contextlib.suppress(RuntimeError):  # no running loop: nobody to tell
            for listener in list(self.catalog_listeners):
                self._spawn(listener())

    def unavailable(self, server: str, tool: str) -> Unavailable | None:
        """The mark of a server's tool by the name agents see (None: available)."""
        transforms = self.transforms.get(server)
        backend = tool if transforms is None else transforms.backend_name(tool)
        return self.availability.of(server, backend)

    # --- calling ----------------------------------------------------------------------
    def resolve(self, principal: Principal, name: str, server: str | None = None) -> CallTarget:
        """What a call of ``name`` by ``principal`` reaches (see calls.py)."""
        return resolve_target(self, principal, name, server)

    def policy_for(self, principal: Principal) -> CompiledPolicy | None:
        """The policy in force when it may refuse ``principal`` something (None: only
        the baseline applies); see :meth:`PolicyService.policy_for`."""
        return self.policies.policy_for(principal) if self.policies is not None else None

    def check_policy(
        self,
        principal: Principal,
        action: str,
        server: str,
        name: str,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """Raise :class:`PolicyDenied` unless the policy allows ``action`` on the
        server's ``name`` (a resource URI or a prompt; tool calls: the pipeline)."""
        if self.policies is not None:
            self.policies.check(principal, action, qualified(server, name), arguments)

    def tool_annotations(self, server: str, tool: str) -> dict[str, Any] | None:
        """A tool's annotations (readOnlyHint, destructiveHint, ...) from the catalog, as
        policy conditions see them; None when the catalog has no such tool."""
        catalog = self.catalogs.get(server)
        for item in catalog.tools if catalog else ():
            if item.name == tool:
                hints = item.annotations
                return hints.model_dump(by_alias=True, exclude_none=True) if hints else {}
        return None

    def timeout_for(self, target: CallTarget) -> float:
        """Seconds a call of ``target`` may take: the tool's own timeout, the server's,
        else the global one (an attribute read and a dict lookup: no database read)."""
        limits = target.runtime.spec.limits
        if limits is None:
            return self.call_timeout
        return limits.timeout_for(target.backend, self.call_timeout)

    async def call(
        self,
        principal: Principal,
        target: CallTarget,
        arguments: dict[str, Any],
        ctx: CallContext | None = None,
    ) -> CallResult:
        """Call a resolved ``target`` through the pipeline (pipeline.py): permission and
        the other stages, timeout, a failing backend as a tool error, the server's
        secrets masked, metrics recorded.

        Raises :class:`CallDenied` when a stage refuses, and BackendRequestError when the
        backend answered with a JSON-RPC error (each front words that its own way)."""
        ctx = ctx or CallContext()
        call = Call(
            principal, target, arguments, ctx.route, ctx.via, origin=ctx.origin, approve=ctx.approve
        )
        call.meta, call.cache = ctx.meta, None if ctx.cacheable else "skip"
        return cast(CallResult, await self.pipeline.run(call, partial(self._reach, ctx=ctx)))

    async def _reach(self, call: Call, *, ctx: CallContext) -> CallResult:
        """The backend stage of :meth:`call` (reach.py), with the call's timeout."""
        return await reach(call, ctx, ctx.timeout or self.timeout_for(call.target))
