"""The FastAPI application factory: wires core services and mounts every pillar."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import __version__, migrate, search_signals
from gateway.asgi_replies import send_error
from gateway.audit.api import router as audit_router
from gateway.auth.api import router as identity_router
from gateway.auth.authenticator import Authenticator
from gateway.auth.housekeeping import run_pruner as run_identity_pruner
from gateway.auth.jwt import JwtConfig, JwtVerifier
from gateway.auth.oauth.delegation import check_delegation
from gateway.auth.oauth.routes import oauth_routes, protected_resource_routes
from gateway.auth.oauth.service import OAuthPolicy, OAuthService
from gateway.auth.service import BootstrapOutcome, ClaimRules, IdentityService
from gateway.auth.session_api import router as session_router
from gateway.auth.sessions import SessionService
from gateway.auth.sso.flow import SsoService
from gateway.auth.sso.store import ProviderStore
from gateway.auth.web import router as sign_in_router
from gateway.builders import build_audit, build_connections, build_server_service
from gateway.config import Settings, load_settings
from gateway.crypto import secret_box
from gateway.datadir import secure_data_dir
from gateway.db import Database
from gateway.errors import document_error_responses, install_error_handlers
from gateway.health import router as health_router
from gateway.job_kinds import platform_kinds
from gateway.jobs.api import router as jobs_router
from gateway.jobs.setup import build_jobs
from gateway.mcp.front import McpFront
from gateway.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from gateway.observability.api import router as telemetry_router
from gateway.observability.exporters import from_environment
from gateway.observability.instruments import follow as follow_instruments
from gateway.observability.metric_export import MetricExport
from gateway.observability.metrics import Metrics
from gateway.observability.settings import TelemetryService
from gateway.observability.tracing import Telemetry
from gateway.policy.api import router as policies_router
from gateway.policy.api import usage_router
from gateway.policy.service import PolicyService
from gateway.policy.team_api import router as team_policies_router
from gateway.scrape import register_collectors
from gateway.servers.api import router as servers_router
from gateway.servers.connections.api import browser_router as connections_browser_router
from gateway.servers.connections.api import router as connections_router
from gateway.servers.connections.refresher import run_refresher
from gateway.servers.generate.api import router as generate_router
from gateway.servers.generate.service import ServerGenerator
from gateway.servers.mcp.handlers import ServersMcp
from gateway.servers.monitor import run_monitor
from gateway.servers.repository import count_team_servers
from gateway.servers.tasks import CallTasks
from gateway.servers.tracing import install as install_tracing
from gateway.state import GatewayState
from sandboxes.api import router as sandboxes_router
from sandboxes.image_job import ImageGenerator
from sandboxes.mcp import SandboxesMcp
from sandboxes.providers import build_providers
from sandboxes.repository import count_team_sandboxes
from sandboxes.service import SandboxService
from skills.api import router as skills_router
from skills.generate.api import router as skill_generate_router
from skills.generate.service import SkillGenerator
from skills.mcp import SkillsMcp
from skills.repository import count_team_skills
from skills.service import SkillService

log = logging.getLogger("gateway")

API_PREFIX = "/api/v1"


class _McpEndpoint:
    """ASGI endpoint that hands MCP requests to the front built at start-up."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        # Set by the lifespan once the front exists (Starlette's State lookup costs a
        # few per cent of a cache hit).
        self.front: McpFront | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self.front
        if front is None:  # served outside the lifespan: nothing to talk to yet
            await send_error(send, 503, "unavailable", "the gateway is starting or stopping")
            return
        await front(scope, receive, send)


class GatewayApp(FastAPI):
    """FastAPI, with the MCP endpoints taken before Starlette's middleware and router.

    A `tools/call` must cost about a millisecond. Starlette's stack (error and
    telemetry middleware, FastAPI's body limit, the router, which walks every REST
    route three times) cost more than the whole fast path, so `/mcp` and
    `/mcp/servers/{name}` go from here straight to the front, wrapped only in what
    they need: the request id and access line, and the body limit (the front
    enforces it while reading). Anything else, or another method, takes the usual
    stack (which answers 404/405).
    """

    mcp_entry: ASGIApp | None = None

    def openapi(self) -> dict[str, Any]:
        """FastAPI's schema, with every ``/api/v1`` operation's error statuses listed."""
        fresh = self.openapi_schema is None
        schema = super().openapi()
        if fresh:
            document_error_responses(schema, API_PREFIX)
        return schema

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = self.mcp_entry
        if entry is not None and scope["type"] == "http" and scope["method"] in _MCP_METHODS:
            path: str = scope["path"]
            if path == "/mcp":
                scope["path_params"] = {}
                return await entry(scope, receive, send)
            if path.startswith("/mcp/servers/"):
                name = path[len("/mcp/servers/") :]
                if name and "/" not in name:
                    scope["path_params"] = {"name": name}
                    return await entry(scope, receive, send)
        await super().__call__(scope, receive, send)


_MCP_METHODS = frozenset({"GET", "POST", "DELETE"})


def _mcp_route(path: str, endpoint: ASGIApp, *methods: str) -> Route:
    """A route for an MCP transport that serves exactly ``methods``.

    Starlette adds HEAD wherever GET is allowed; the transports have no HEAD (it
    would open an event stream), so it is taken out: HEAD gets 405 and ``Allow``.
    """
    route = Route(path, endpoint=endpoint, methods=list(methods))
    assert route.methods is not None
    route.methods.discard("HEAD")
    return route


_NO_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False}


def _otel_configured() -> bool:
    return any(k.startswith(("OTEL_", "FASTAPI_OTEL_")) for k in os.environ)


class SchemaNotReady(RuntimeError):
    """The database schema is behind the code and auto-migration is off."""


def _announce_generated_key(outcome: BootstrapOutcome) -> None:
    # Printed to the terminal, never logged: log pipelines keep copies of everything.
    if outcome.key:
        print(
            "\n"
            "  ┌──────────────────────────────────────────────────────────────────────\n"
            f"  │ Created admin {outcome.admin_email}. Its API key (shown once):\n"
            f"  │   {outcome.key}\n"
            "  │ Set MCPGW_BOOTSTRAP_API_KEY to choose the key yourself.\n"
            "  └──────────────────────────────────────────────────────────────────────\n",
            file=sys.stderr,
            flush=True,
        )


async def start_state(
    settings: Settings, metrics: Metrics | None = None, telemetry: Telemetry | None = None
) -> GatewayState:
    """Open the database, migrate if allowed, ensure the first admin exists."""
    # Before anything is written there: the data dir holds secrets (0700, files 0600).
    secure_data_dir(settings.data_dir.resolve())
    db = Database(settings.resolved_database_url)
    try:
        head = migrate.head_revision()
        current = await migrate.current_revision(db.engine)
        if current != head and settings.should_auto_migrate:
            await migrate.upgrade(db.engine)
            log.info("migrated the database", extra={"from": current, "to": head})
        elif current != head:
            raise SchemaNotReady(
                f"database schema is at {current or 'empty'}, code needs {head}: "
                "run `mcpgw db upgrade` (or set MCPGW_AUTO_MIGRATE=true)"
            )
        metrics = metrics or Metrics()
        audit = build_audit(settings, db, metrics, process=True)
        identity = IdentityService(db, audit)
        key = settings.bootstrap_api_key
        outcome = await identity.bootstrap(
            settings.bootstrap_admin_email, key.get_secret_value() if key else None
        )
    except BaseException:
        await db.dispose()
        raise
    system = {"auth_method": "bootstrap"}
    if outcome.created_admin:
        audit.change("user.create", None, outcome.admin_email, new={"role": "admin"}, actor=system)
    if outcome.created_admin or outcome.installed_bootstrap_key:
        what = "MCPGW_BOOTSTRAP_API_KEY" if settings.bootstrap_api_key else "generated"
        audit.change("key.create", None, outcome.admin_email, new={"source": what}, actor=system)
    if outcome.created_admin:
        log.info("created the first admin", extra={"email": outcome.admin_email})
    if outcome.installed_bootstrap_key:
        log.info("installed MCPGW_BOOTSTRAP_API_KEY for the first admin")
    _announce_generated_key(outcome)
    jwt_config = JwtConfig.of(settings)
    sessions = SessionService(db, identity, settings.session_ttl_seconds, audit)
    oauth = OAuthService(
        db,
        identity,
        secret_box(settings),
        OAuthPolicy(
            access_ttl=settings.oauth_access_token_ttl_seconds,
            refresh_ttl=settings.oauth_refresh_token_ttl_seconds,
            registration=settings.oauth_registration_enabled,
            allow_private_urls=settings.allow_private_urls,
        ),
        audit,
    )
    sso = SsoService(
        db,
        identity,
        ProviderStore(db, secret_box(settings), settings.sso_providers, audit),
        allow_private_urls=settings.allow_private_urls,
        leeway=settings.jwt_leeway_seconds,
    )
    authenticator = Authenticator(
        identity,
        settings.auth_cache_ttl_seconds,
        JwtVerifier(jwt_config) if jwt_config else None,
        ClaimRules(
            create_users=settings.jwt_create_users,
            domains=tuple(d.lower() for d in settings.jwt_allowed_domains),
            role_claim=settings.jwt_role_claim,
        ),
        oauth=oauth if settings.own_authorization_server else None,
        sessions=sessions,
    )
    policies = PolicyService(db, audit)
    await policies.load()
    servers = build_server_service(settings, db, metrics, audit, policies, telemetry)
    connections = build_connections(settings, db, servers, audit)
    await connections.sync()
    await servers.load()
    await servers.warm_up()
    skills = SkillService(db, servers, settings, audit=audit, policies=policies)
    sandboxes = SandboxService(
        db, settings, build_providers(settings), audit=audit, policies=policies
    )
    # What each pillar counts of a team's, for its quotas (gateway/policy/quotas.py).
    policies.quotas.counters.update(
        servers=count_team_servers, skills=count_team_skills, sandboxes=count_team_sandboxes
    )
    return GatewayState(
        settings,
        db,
        identity,
        authenticator,
        head,
        servers,
        skills=skills,
        sandboxes=sandboxes,
        audit=audit,
        metrics=metrics,
        sessions=sessions,
        oauth=oauth,
        sso=sso,
        connections=connections,
        policies=policies,
    )


def settle_heap() -> None:
    """Freeze what start-up allocated, out of reach of the cyclic garbage collector.

    Imports and start-up leave a few hundred thousand long-lived objects; without
    this, the collections that requests trigger keep walking them (about 5% of the
    gateway's CPU under load). A larger first generation makes those collections rarer.
    For a serving process only: frozen objects are never freed.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


_GC_GEN0_THRESHOLD = 10_000


def create_app(settings: Settings | None = None, *, serving: bool = False) -> FastAPI:
    """Build the gateway application. ``settings`` defaults to the environment's.

    ``serving``: this process exists to serve the app (``mcpgw serve``), so tune it
    for that once started (see :func:`settle_heap`).
    """
    settings = settings or load_settings()
    # Off until an exporter is configured (environment now, the settings API later).
    telemetry = Telemetry()
    metrics = Metrics()  # made here: the request middleware counts into it
    metric_export = telemetry.metric_export = MetricExport(metrics.registry, metrics.refresh)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await start_state(settings, metrics, telemetry)
        app.state.gw = state
        install_tracing(state.servers.pipeline, telemetry)
        follow_instruments(telemetry, app)  # REST, httpx, SQL and Redis spans while on
        app.state.telemetry_settings = TelemetryService(
            state.db, secret_box(settings), telemetry, state.audit
        )
        await app.state.telemetry_settings.start(from_environment(os.environ, settings))
        # Each service under its name, for the routers' typed dependencies (provided.py).
        for name in (
            "identity",
            "authenticator",
            "sessions",
            "oauth",
            "sso",
            "servers",
            "skills",
            "sandboxes",
            "audit",
            "connections",
            "policies",
        ):
            setattr(app.state, name, getattr(state, name))
        app.state.limiter = state.servers.limiter
        jobs = build_jobs(
            settings, state.db, serving=serving, kinds=platform_kinds(), audit=state.audit
        )
        app.state.jobs = jobs.service
        call_tasks = app.state.call_tasks = CallTasks(state.servers, jobs.service)
        app.state.server_generator = ServerGenerator(
            jobs.service, state.servers, secret_box(settings), settings
        )
        app.state.image_generator = ImageGenerator(jobs.service, settings)
        app.state.skill_generator = SkillGenerator(jobs.service, state.skills, settings)
        jobs.start(settings)
        tasks = [
            asyncio.create_task(state.audit.writer.run(), name="audit-writer"),
            asyncio.create_task(
                state.authenticator.run_usage_flusher(settings.key_last_used_flush_seconds),
                name="key-usage-flusher",
            ),
            asyncio.create_task(
                run_monitor(state.servers, settings.health_interval_seconds),
                name="server-monitor",
            ),
            asyncio.create_task(
                state.skills.usage.run(settings.skills_stats_flush_seconds),
                name="skill-stats-flusher",
            ),
            asyncio.create_task(
                state.sandboxes.run_reaper(settings.sandbox_reaper_interval_seconds),
                name="sandbox-reaper",
            ),
        ]
        tasks.append(asyncio.create_task(run_identity_pruner(state.db), name="sign-in-pruner"))
        if search_signals.wanted(settings):
            tasks.append(
                asyncio.create_task(
                    search_signals.run(settings, state.audit, state.skills), name="search-signals"
                )
            )
        tasks.append(
            asyncio.create_task(
                app.state.telemetry_settings.run_follower(), name="telemetry-follower"
            )
        )
        tasks.append(asyncio.create_task(metric_export.run(), name="metric-export"))
        if state.policies is not None:
            tasks.append(
                asyncio.create_task(
                    state.policies.run_follower(settings.policy_refresh_seconds),
                    name="policy-follower",
                )
            )
        if settings.oauth_authorization_server:  # said in the log, start-up goes on
            tasks.append(
                asyncio.create_task(
                    check_delegation(
                        settings.oauth_authorization_server, settings.allow_private_urls
                    ),
                    name="oauth-delegation-check",
                )
            )
        if settings.audit_retention_days > 0:
            tasks.append(
                asyncio.create_task(
                    state.audit.run_pruner(settings.audit_retention_days), name="audit-pruner"
                )
            )
        if state.connections is not None:
            tasks.append(
                asyncio.create_task(run_refresher(state.connections), name="connection-refresher")
            )
        log.info(
            "gateway ready",
            extra={"version": __version__, "database": state.db.dialect},
        )
        if not settings.auth_required:
            log.warning(
                "MCPGW_AUTH_REQUIRED=false: requests without credentials act as the bootstrap "
                "admin. Development only; never expose this gateway."
            )
        front = McpFront(
            settings,
            ServersMcp(state.servers, call_tasks),
            state.authenticator,
            surfaces=[
                SkillsMcp(state.skills),
                SandboxesMcp(state.sandboxes, skill_files=state.skills.files),
            ],
        )
        app.state.mcp_front = mcp_endpoint.front = front
        register_collectors(state, front)
        if serving:
            settle_heap()
            front.on_warm = settle_heap  # again once the search model is in (seconds later)
        try:
            async with front.run():
                yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await jobs.close()
            await state.servers.pool.close()
            await state.authenticator.flush_usage()
            await state.skills.usage.flush()
            await state.sandboxes.flush()
            await state.sandboxes.close()
            # Last: everything above may still have audited something.
            await state.audit.close()
            await state.db.dispose()
            await asyncio.to_thread(telemetry.shutdown)

    app = GatewayApp(
        title="MCP Gateway",
        version=__version__,
        description="Tools, knowledge and a computer for AI agents, through one URL.",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
        # FastAPI's native OpenTelemetry asks the OTel providers on every request (about
        # 25 µs); it is only worth it when OTel is configured through the environment.
        telemetry=None if _otel_configured() else _NO_TELEMETRY,
    )
    install_error_handlers(app)
    app.state.public_url = settings.public_url
    app.include_router(health_router)
    app.include_router(identity_router, prefix=API_PREFIX)
    app.include_router(session_router, prefix=API_PREFIX)
    app.include_router(sign_in_router)
    if settings.advertises_oauth:
        delegate = settings.oauth_authorization_server
        app.router.routes.extend(protected_resource_routes(settings.public_url, delegate))
    if settings.own_authorization_server:
        app.router.routes.extend(
            oauth_routes(app, settings.public_url, registration=settings.oauth_registration_enabled)
        )
    app.include_router(generate_router, prefix=API_PREFIX)
    app.include_router(servers_router, prefix=API_PREFIX)
    app.include_router(connections_router, prefix=API_PREFIX)
    app.include_router(connections_browser_router)
    app.include_router(skill_generate_router, prefix=API_PREFIX)
    app.include_router(skills_router, prefix=API_PREFIX)
    app.include_router(sandboxes_router, prefix=API_PREFIX)
    app.include_router(audit_router, prefix=API_PREFIX)
    app.include_router(jobs_router, prefix=API_PREFIX)
    app.include_router(telemetry_router, prefix=API_PREFIX)
    app.include_router(policies_router, prefix=API_PREFIX)
    app.include_router(team_policies_router, prefix=API_PREFIX)
    app.include_router(usage_router, prefix=API_PREFIX)
    mcp_endpoint = _McpEndpoint(app)
    for path in ("/mcp", "/mcp/servers/{name}"):
        app.router.routes.append(_mcp_route(path, mcp_endpoint, "GET", "POST", "DELETE"))
    # The legacy HTTP+SSE transport, for clients from before Streamable HTTP.
    app.router.routes.append(_mcp_route("/sse", mcp_endpoint, "GET"))
    app.router.routes.append(_mcp_route("/messages/", mcp_endpoint, "POST"))
    app.mcp_entry = RequestContextMiddleware(mcp_endpoint, telemetry, metrics)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestContextMiddleware, telemetry=telemetry, metrics=metrics, rest=True)
    return app
