"""Checks on a server's registration: its config parsed for its type and refused when
it asks for more than the registering user may; and what a version row keeps."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from gateway.auth.principal import Principal
from gateway.db import Database
from gateway.errors import Forbidden, InvalidInput
from gateway.servers.cache.rules import split_cache
from gateway.servers.models import McpServer
from gateway.servers.repository import ServerRepository
from gateway.servers.resilience.settings import CONFIG_KEY, parse_resilience, split_config
from gateway.servers.runtimes.base import BackendError
from gateway.servers.runtimes.replica_settings import CONFIG_KEY as REPLICAS
from gateway.servers.runtimes.replica_settings import parse_replicas, split_replicas
from gateway.servers.schemas import GeneratedConfig, RemoteConfig, parse_config
from gateway.ssrf import check_url


def opts_out_of_isolation(server_type: str, config: dict[str, Any]) -> bool:
    """Whether a (validated) config runs a package server, or a bundle member, unisolated."""
    if server_type == "bundle":
        return any(
            opts_out_of_isolation(m["type"], m.get("config") or {})
            for m in config.get("members", [])
            if m.get("type")
        )
    return config.get("isolation") == "none"


async def validate_config(
    db: Database,
    server_type: str,
    config: dict[str, Any],
    principal: Principal,
    *,
    allow_private_urls: bool,
) -> dict[str, Any]:
    """The config parsed for ``server_type``, refused (422/403) when it is wrong or
    asks for more than ``principal`` may (generated code, no isolation, a bad URL, an
    unknown bundle member); its `resilience` and `cache` settings are checked apart (the
    runtimes never read them: resilience/settings.py, cache/rules.py)."""
    config, resilience = split_config(config)
    config, cache = split_cache(config)
    config, replicas = split_replicas(config)
    parsed = parse_config(server_type, config)
    if replicas is not None:
        replicas = parse_replicas(server_type, replicas)
    runs_code = isinstance(parsed, GeneratedConfig) and parsed.openapi is None
    if runs_code and not principal.is_admin:
        raise Forbidden("only admins may register generated servers: their code runs in-process")
    if not principal.is_admin and opts_out_of_isolation(server_type, parsed.model_dump()):
        raise Forbidden(
            "only admins may set isolation 'none': the server then runs on the gateway "
            "host and can read its secret key and database",
            code="isolation_opt_out_forbidden",
        )
    url_field = None
    if isinstance(parsed, RemoteConfig):
        url_field, url = "config.url", parsed.url
    elif isinstance(parsed, GeneratedConfig) and parsed.base_url:
        url_field, url = "config.base_url", parsed.base_url
    urls = [] if url_field is None else [(url_field, url)]
    for i, endpoint in enumerate((replicas or {}).get("endpoints", [])):
        urls.append((f"config.{REPLICAS}.endpoints.{i}.url", endpoint["url"]))
    for where, address in urls:
        try:
            await check_url(address, allow_private_urls, must_resolve=False)
        except BackendError as exc:
            raise InvalidInput(
                f"{where}: {exc}", errors=[{"field": where, "message": str(exc)}]
            ) from None
    if server_type == "bundle":
        async with db.session() as session:
            repo = ServerRepository(session)
            for i, member in enumerate(parsed.model_dump()["members"]):
                if member.get("server") and await repo.get_by_name(member["server"]) is None:
                    field = f"config.members.{i}.server"
                    raise InvalidInput(
                        f"{field}: no server named {member['server']!r}",
                        errors=[{"field": field, "message": "unknown server"}],
                    )
                if member.get("type") == "generated" and not principal.is_admin:
                    raise Forbidden("only admins may add generated members")
    checked = parsed.model_dump(exclude_none=True)
    if resilience is not None:
        checked[CONFIG_KEY] = parse_resilience(resilience)
    if replicas is not None:
        checked[REPLICAS] = replicas
    return checked if cache is None else {**checked, "cache": cache}


def snapshot(row: McpServer, secret_names: dict[str, list[str]]) -> dict[str, Any]:
    """What a version row (and the audit trail) keeps of a server: its settings and
    secret names; an OpenAPI document by its digest (it may be megabytes)."""
    return {
        "type": row.type,
        "config": _recorded(row.config),
        "description": row.description,
        "tags": row.tags,
        "enabled": row.enabled,
        "env": row.env,
        "secrets": {k: sorted(secret_names.get(k, [])) for k in ("env", "headers")},
        "max_concurrency": row.max_concurrency,
        "limits": row.limits,
    }


def _recorded(config: dict[str, Any]) -> dict[str, Any]:
    document = config.get("openapi")
    if not isinstance(document, dict):
        return config
    raw = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    title = str((document.get("info") or {}).get("title") or "")[:200]
    digest = {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw), "title": title}
    return {**config, "openapi": digest}
