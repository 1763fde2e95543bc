"""``mcpgw audit …``: search, tail and export the audit trail of a running gateway
(``--url``/``--key``, needs ``audit:read``); verify its hash chain and prune it directly
on the database (operator commands: they read the ``MCPGW_*`` settings)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from gateway.cli_client import (
    DEFAULT_URL,
    GatewayClient,
    KeyOption,
    UrlOption,
    print_json,
    print_table,
)

audit_app = typer.Typer(help="The audit trail: search, tail, export, verify, prune.")

Opt = Annotated[str | None, typer.Option(show_default=False)]


def _filters(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _line(item: dict[str, Any]) -> dict[str, Any]:
    actor = item.get("actor") or {}
    error = item.get("error") or {}
    return {
        "ts": item["ts"][:23],
        "actor": actor.get("email") or actor.get("key_prefix"),
        "action": item["action"],
        "route": item.get("route"),
        "server": item.get("server"),
        "target": item.get("target"),
        "outcome": item["outcome"],
        "ms": item.get("latency_ms"),
        "error": (error.get("message") or "")[:60] or None,
    }


@audit_app.command("search")
def search(
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    server: Opt = None,
    target: Opt = None,
    action: Opt = None,
    outcome: Opt = None,
    actor: Opt = None,
    team: Opt = None,
    since: Opt = None,
    until: Opt = None,
    q: Opt = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw page.")] = False,
) -> None:
    """Newest events first, filtered (same names as GET /api/v1/audit)."""
    params = _filters(
        server=server, target=target, action=action, outcome=outcome, actor=actor, team=team,
        since=since, until=until, q=q, limit=limit,
    )  # fmt: skip
    page = GatewayClient(url, key).request("GET", "/api/v1/audit", params=params)
    if as_json:
        print_json(page)
        return
    print_table(
        [_line(i) for i in page["items"]],
        list(_line(page["items"][0]) if page["items"] else ["ts"]),
    )
    if page.get("next_cursor"):
        typer.echo("(more: --json shows next_cursor)")


@audit_app.command("export")
def export(
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    server: Opt = None,
    action: Opt = None,
    outcome: Opt = None,
    actor: Opt = None,
    since: Opt = None,
    until: Opt = None,
) -> None:
    """Stream every matching event to stdout (JSON lines or CSV)."""
    params = _filters(
        format=fmt, server=server, action=action, outcome=outcome, actor=actor, since=since,
        until=until,
    )  # fmt: skip
    client = GatewayClient(url, key)
    with client.http.stream("GET", "/api/v1/audit/export", params=params, timeout=None) as r:
        if r.status_code >= 400:
            r.read()
            typer.echo(f"error ({r.status_code}) {r.text[:500]}", err=True)
            raise typer.Exit(1)
        for chunk in r.iter_bytes():
            sys.stdout.buffer.write(chunk)
    sys.stdout.flush()


@audit_app.command("tail")
def tail(
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    server: Opt = None,
    action: Opt = None,
    outcome: Opt = None,
    backlog: Annotated[int, typer.Option(min=0, max=500)] = 10,
    count: Annotated[int | None, typer.Option(help="Stop after this many events.")] = None,
) -> None:
    """Follow events as they are stored (Ctrl-C to stop)."""
    params = _filters(server=server, action=action, outcome=outcome, backlog=backlog)
    client = GatewayClient(url, key)
    seen = 0
    try:
        with client.http.stream(
            "GET", "/api/v1/audit/stream", params=params, timeout=httpx.Timeout(30, read=None)
        ) as r:
            if r.status_code >= 400:
                r.read()
                typer.echo(f"error ({r.status_code}) {r.text[:500]}", err=True)
                raise typer.Exit(1)
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                row = _line(json.loads(line[5:]))
                typer.echo("  ".join(str(v) for v in row.values() if v is not None))
                seen += 1
                if count is not None and seen >= count:
                    return
    except KeyboardInterrupt:
        return


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("an ISO 8601 time, e.g. 2026-12-01T00:00:00Z") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _database_url() -> str:
    """The database the settings name; an error if it is a SQLite file that is not there
    (opening it would create an empty one)."""
    from gateway.config import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    url = settings.resolved_database_url
    path = url.split(":///", 1)[-1]
    if settings.is_sqlite and not Path(path).is_file():
        typer.echo(f"error: no database at {path} (is MCPGW_DATA_DIR the gateway's?)", err=True)
        raise typer.Exit(2)
    return url


async def _offline_log(url: str) -> Any:
    """The audit log of the database at ``url``, checked to be migrated."""
    from gateway import migrate
    from gateway.audit.service import AuditLog
    from gateway.db import Database

    db = Database(url)
    current = await migrate.current_revision(db.engine)
    if current != migrate.head_revision():
        await db.dispose()
        where = url.split("@")[-1]  # no credentials in the message
        typer.echo(
            f"error: the database ({where}) is at schema {current or 'empty'}, not "
            f"{migrate.head_revision()}: is MCPGW_DATABASE_URL / MCPGW_DATA_DIR the gateway's? "
            "(`mcpgw db upgrade` migrates it)",
            err=True,
        )
        raise typer.Exit(2)
    return AuditLog(db, None, enabled=False), db


@audit_app.command("verify")
def verify(
    since: Annotated[str | None, typer.Option(help="Check rows from this time on.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recompute the hash chain of every writer stream in the database; exit 1 at the
    first broken link (an edited, reordered or deleted row)."""
    when = _since(since)
    url = _database_url()

    async def go() -> Any:
        log, db = await _offline_log(url)
        try:
            return await log.verify(when)
        finally:
            await db.dispose()

    report = asyncio.run(go())
    if as_json:
        print_json(report.model_dump(mode="json"))
    elif report.ok:
        typer.echo(f"ok: {report.rows} rows in {report.streams} streams verified")
        for stream, head in report.heads.items():
            typer.echo(f"  head {stream} {head}")
    else:
        b = report.broken
        typer.echo(
            f"BROKEN after {report.rows} good rows: stream {b.stream} seq {b.seq} "
            f"(id {b.id}): {b.problem}"
        )
    if not report.ok:
        raise typer.Exit(1)


_DAYS = "Keep this many days [MCPGW_AUDIT_RETENTION_DAYS]."


@audit_app.command("prune")
def prune(
    days: Annotated[float | None, typer.Option(help=_DAYS)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count only.")] = False,
) -> None:
    """Delete rows older than the retention, keeping the chain verifiable."""
    from gateway.config import load_settings

    keep = days if days is not None else load_settings().audit_retention_days
    if keep <= 0:
        typer.echo("retention is 0 (keep forever): nothing to prune")
        return

    url = _database_url()

    async def go() -> Any:
        log, db = await _offline_log(url)
        try:
            return await log.prune(keep, dry_run=dry_run)
        finally:
            await db.dispose()

    out = asyncio.run(go())
    verb = "would delete" if dry_run else "deleted"
    cutoff = f"{out.cutoff:%Y-%m-%d %H:%M} UTC"
    typer.echo(f"{verb} {out.rows} rows older than {cutoff} in {out.streams} streams")
