"""Building the services that need more than a constructor call from the settings:
the audit trail and its writer, pillar 1's server service and its call pipeline, the
per-user connections. Part of the composition root (app.py and the CLI use them)."""

from __future__ import annotations

import logging

from gateway.audit.service import AuditLog
from gateway.audit.sink import InlineSink, ProcessSink
from gateway.audit.store import SPILL_DIR, AuditStore
from gateway.audit.writer import AuditWriter, Sink
from gateway.config import ConfigError, Settings
from gateway.crypto import secret_box
from gateway.db import Database
from gateway.observability.metrics import Metrics
from gateway.observability.tracing import Telemetry
from gateway.policy.limits import Limiter
from gateway.policy.service import PolicyService
from gateway.servers.cache.stage import ResponseCache
from gateway.servers.cache.store import MemoryStore, RedisStore
from gateway.servers.connections.oauth import OAuthApp
from gateway.servers.connections.service import ConnectionService, RefreshPolicy
from gateway.servers.controls import follow_limits
from gateway.servers.pipeline import AnnotationLookup, Authorize, Pipeline, Record, Stage
from gateway.servers.pool import SessionPool
from gateway.servers.resilience.settings import Defaults
from gateway.servers.resilience.stage import follow_servers
from gateway.servers.runtimes.base import Health, RuntimeContext
from gateway.servers.service import ServerService

log = logging.getLogger("gateway")


def build_connections(
    settings: Settings, db: Database, servers: ServerService, audit: AuditLog | None = None
) -> ConnectionService:
    """The token vault (per-user credentials for backends), wired into the server pool:
    its runtimes tell a caller without a connection how to connect."""
    connections = ConnectionService(
        db,
        secret_box(settings),
        servers,
        OAuthApp(allow_private_urls=settings.allow_private_urls),
        policy=RefreshPolicy(
            margin=settings.connections_refresh_margin_seconds,
            jitter=settings.connections_refresh_jitter_seconds,
            interval=settings.connections_refresh_interval_seconds,
            max_failures=settings.connections_max_refresh_failures,
        ),
        audit=audit,
        public_url=settings.public_url,
    )
    servers.pool.hint = connections.hint
    return connections


def build_audit(
    settings: Settings, db: Database, metrics: Metrics | None = None, *, process: bool = False
) -> AuditLog:
    """The audit trail and its writer (gateway/audit/), configured from ``settings``.
    ``process``: rows are stored by the audit writer process (a gateway's default,
    ``MCPGW_AUDIT_WRITER``); otherwise, and for CLI commands, in this process."""
    spill_dir = settings.data_dir.resolve() / SPILL_DIR
    sink: Sink
    if process and settings.audit_writer == "process" and settings.audit_enabled:
        sink = ProcessSink(
            db,
            spill_dir,
            retries=settings.audit_write_retries,
            batch_size=settings.audit_batch_size,
            interval=settings.audit_flush_seconds,
            log_level=settings.log_level,
            log_format=settings.log_format,
            metrics=metrics,
        )
    else:
        store = AuditStore(
            db,
            spill_dir,
            retries=settings.audit_write_retries,
            reingest_batch=settings.audit_batch_size,
            metrics=metrics,
        )
        sink = InlineSink(store)
    writer = AuditWriter(
        sink,
        batch_size=settings.audit_batch_size,
        interval=settings.audit_flush_seconds,
        max_queue=settings.audit_queue_max,
        full_wait=settings.audit_queue_wait_seconds,
        metrics=metrics,
    )
    return AuditLog(db, writer, enabled=settings.audit_enabled)


def build_server_service(
    settings: Settings,
    db: Database,
    metrics: Metrics | None = None,
    audit: AuditLog | None = None,
    policies: PolicyService | None = None,
    telemetry: Telemetry | None = None,
) -> ServerService:
    """The servers pillar: secret box, runtime context, session pool, service, and the
    call pipeline's stages (calls are counted in ``metrics`` and audited in ``audit``
    when given)."""
    from gateway.servers.essentials import git as essentials_git

    essentials_git.configure(settings.git_roots)
    box = secret_box(settings)
    if settings.secret_key is None and not settings.is_sqlite:
        log.warning(
            "MCPGW_SECRET_KEY is unset: stored secrets use a key in the data dir, which other "
            "replicas cannot read; set MCPGW_SECRET_KEY on every replica"
        )
    service: ServerService

    cache: ResponseCache | None = None

    async def on_list_changed(name: str, announced: bool = False) -> None:
        if announced and cache is not None:  # what it answered may have changed too
            cache.invalidate_soon(name.split(".", 1)[0])
        await service.on_list_changed(name, announced=announced)

    async def on_health_changed(name: str, health: Health) -> None:
        await service.on_health_changed(name, health)

    async def on_resource_updated(server: str, uri: str) -> None:
        if cache is not None:
            cache.invalidate_soon(server.split(".", 1)[0])
        await service.on_resource_updated(server, uri)

    ctx = RuntimeContext(
        data_dir=settings.data_dir.resolve(),
        connect_timeout=settings.server_connect_timeout_seconds,
        allow_private_urls=settings.allow_private_urls,
        inherit_env=tuple(settings.server_inherit_env),
        isolation=settings.server_isolation,
        on_list_changed=on_list_changed,
        on_health_changed=on_health_changed,
        on_resource_updated=on_resource_updated,
        telemetry=telemetry,
    )
    pool = SessionPool(ctx, settings.server_idle_seconds)
    service = ServerService(
        db,
        box,
        pool,
        call_timeout=settings.server_call_timeout_seconds,
        default_concurrency=settings.server_max_concurrency,
        allow_private_urls=settings.allow_private_urls,
        max_request_bytes=settings.max_request_bytes,
        pipeline=build_pipeline(
            metrics,
            audit,
            policies,
            annotations=lambda server, tool: service.tool_annotations(server, tool),
        ),
        audit=audit,
    )
    service.policies = policies
    follow_servers(service, Defaults.of(settings))
    cache = build_cache(settings, service, metrics)
    if policies is not None:
        limiter = Limiter(
            settings.redis_url,
            failure_mode=settings.rate_limit_failure_mode,
            key_prefix=settings.rate_limit_key_prefix,
        )
        service.limiter = limiter
        follow_limits(policies, service.pipeline, limiter)
    return service


def build_pipeline(
    metrics: Metrics | None,
    audit: AuditLog | None = None,
    policies: PolicyService | None = None,
    annotations: AnnotationLookup | None = None,
) -> Pipeline:
    """The stages every tool call passes (gateway/servers/pipeline.py): authorize (the
    baseline and the policy in force) and record; ``limit`` is installed while the
    policy has limits (:func:`follow_limits`); later controls are installed by name."""
    stages: dict[str, Stage] = {"authorize": Authorize(policies, annotations)}
    if metrics is not None or (audit is not None and audit.enabled):
        recorder = metrics.record_call if metrics is not None else None
        refusals = metrics.refused if metrics is not None else None
        stages["record"] = Record(
            recorder, audit if audit is not None and audit.enabled else None, refusals
        )
    return Pipeline(stages)


def build_cache(
    settings: Settings, service: ServerService, metrics: Metrics | None = None
) -> ResponseCache | None:
    """The response cache (gateway/servers/cache/), installed in the service's pipeline;
    None when ``MCPGW_CACHE_ENABLED`` is off. On Redis when ``MCPGW_CACHE_STORAGE`` says
    so (``auto``: when ``MCPGW_REDIS_URL`` is set)."""
    if not settings.cache_enabled:
        return None
    storage = settings.cache_storage
    if storage == "auto":
        storage = "redis" if settings.redis_url else "memory"
    if storage == "redis" and not settings.redis_url:
        raise ConfigError("MCPGW_CACHE_STORAGE=redis needs MCPGW_REDIS_URL")
    cache = ResponseCache(
        lambda server: service.catalogs.get(server),
        default_ttl=settings.cache_default_ttl_seconds,
        memory=MemoryStore(settings.cache_max_entries, settings.cache_max_bytes),
        remote=(
            RedisStore(settings.redis_url, settings.cache_key_prefix)
            if storage == "redis" and settings.redis_url
            else None
        ),
        registry=metrics.registry if metrics is not None else None,
    )
    service.pipeline.install("cache", cache)
    return cache
