"""The ``mcpgw`` command line.

Commands that act on the local installation (``serve``, ``db``, ``admin``) read
the ``MCPGW_*`` settings; commands that talk to a running gateway take
``--url``/``--key`` (defaults: ``MCPGW_URL``, ``MCPGW_API_KEY``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer

from gateway import __version__
from gateway.cli_audit import audit_app
from gateway.cli_client import DEFAULT_URL, KeyOption, UrlOption
from gateway.cli_generate import servers_generate  # noqa: F401  (adds `servers generate`)
from gateway.cli_jobs import jobs_app, worker
from gateway.cli_login import login, logout
from gateway.cli_policies import policies_app
from gateway.cli_sandboxes import sandboxes_app
from gateway.cli_servers import servers_app, tools_app
from gateway.cli_skills import skills_app
from gateway.cli_telemetry import telemetry_app
from gateway.config import ConfigError, Settings, load_settings

T = TypeVar("T")

app = typer.Typer(
    name="mcpgw",
    help="MCP Gateway: tools, knowledge and a computer for AI agents through one URL.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Database schema: upgrade, downgrade, show the current revision.")
admin_app = typer.Typer(help="Operator commands that work directly on the database.")
keys_app = typer.Typer(help="API keys of a running gateway (uses --url/--key).")
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(keys_app, name="keys")
app.add_typer(servers_app, name="servers")
app.add_typer(tools_app, name="tools")
app.add_typer(skills_app, name="skills")
app.add_typer(sandboxes_app, name="sandboxes")
app.add_typer(audit_app, name="audit")
app.add_typer(policies_app, name="policies")
app.add_typer(jobs_app, name="jobs")
app.add_typer(telemetry_app, name="telemetry")
app.command("worker")(worker)
app.command("login")(login)
app.command("logout")(logout)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mcpgw {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """MCP Gateway command line."""


# --- serve ------------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [MCPGW_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [MCPGW_PORT].")] = None,
) -> None:
    """Run the gateway (embedded default: SQLite under MCPGW_DATA_DIR, migrated on start)."""
    import uvicorn

    from gateway.app import create_app
    from gateway.observability.logging import configure_logging
    from gateway.tls import uvicorn_http_options

    settings = _settings(host=host, port=port)
    configure_logging(settings.log_level, settings.log_format)
    config = uvicorn.Config(
        create_app(settings, serving=True),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
        **uvicorn_http_options(settings),
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise typer.Exit(1)


# --- db ---------------------------------------------------------------------------------
def _migrate(action: str, revision: str | None) -> str | None:
    """Run ``upgrade``/``downgrade`` to ``revision`` (or nothing) and return the revision."""
    from gateway import migrate
    from gateway.db import Database

    settings = _settings()

    async def go() -> str | None:
        db = Database(settings.resolved_database_url)
        try:
            if action == "upgrade" and revision:
                await migrate.upgrade(db.engine, revision)
            elif action == "downgrade" and revision:
                await migrate.downgrade(db.engine, revision)
            return await migrate.current_revision(db.engine)
        finally:
            await db.dispose()

    return _run(go())


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Migrate the database up to REVISION (default: head)."""
    typer.echo(f"database at revision {_migrate('upgrade', revision)}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, or 'base' for empty.")],
) -> None:
    """Migrate the database down to REVISION ('base' drops every table)."""
    typer.echo(f"database at revision {_migrate('downgrade', revision) or 'base (empty)'}")


@db_app.command("current")
def db_current() -> None:
    """Show the database's revision and the code's head revision."""
    from gateway import migrate

    current, head = _migrate("current", None), migrate.head_revision()
    state = "up to date" if current == head else "behind: run `mcpgw db upgrade`"
    typer.echo(f"current: {current or 'base (empty)'}\nhead:    {head}\n{state}")


# --- admin ------------------------------------------------------------------------------
@admin_app.command("create-key")
def admin_create_key(
    user: Annotated[str, typer.Option("--user", help="Email of the key's user (created if new).")],
    role: Annotated[
        str | None,
        typer.Option(help="Role for the user: admin, operator, developer, viewer."),
    ] = None,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "cli",
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="Scope (repeatable). Default: *.")
    ] = None,
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, max=3650, help="Expire after N days.")
    ] = None,
) -> None:
    """Create an API key directly in the database (works with the gateway down).

    Use it to get the first key of a new user or to recover a lost admin key.
    The key is printed once on stdout.
    """
    from gateway import migrate
    from gateway.auth.rbac import Role, validate_scope
    from gateway.auth.service import IdentityService
    from gateway.db import Database

    settings = _settings()
    try:
        role_value = Role(role) if role else None
    except ValueError as exc:
        raise typer.BadParameter(
            f"unknown role {role!r}; one of {[r.value for r in Role]}", param_hint="--role"
        ) from exc
    scopes = scope or ["*"]
    for s in scopes:
        try:
            validate_scope(s)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--scope") from exc
    if "@" not in user:
        raise typer.BadParameter("must be an email address", param_hint="--user")

    async def go() -> tuple[Any, Any, str, bool]:
        from gateway.builders import build_audit

        db = Database(settings.resolved_database_url)
        audit = build_audit(settings, db)
        try:
            if settings.should_auto_migrate:
                await migrate.upgrade(db.engine)
            return await IdentityService(db, audit).issue_key_offline(
                user, role=role_value, name=name, scopes=scopes, expires_in_days=expires_in_days
            )
        finally:
            await audit.flush()  # the change is audited like any other (route "cli")
            await db.dispose()

    try:
        row_user, key, secret, created = _run(go())
    except Exception as exc:
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc
    what = "created user" if created else "user"
    typer.echo(
        f"{what} {row_user.email} (role {row_user.role}); key {key.prefix}… id {key.id}", err=True
    )
    typer.echo(secret)


# --- talking to a running gateway --------------------------------------------------------
@app.command()
def whoami(url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """Show the user and key the gateway sees."""
    from gateway.cli_client import GatewayClient, print_json

    print_json(GatewayClient(url, key).request("GET", "/api/v1/me"))


@app.command()
def connect(
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    server: Annotated[
        str | None, typer.Option(help="Bridge to /mcp/servers/NAME instead of /mcp.")
    ] = None,
) -> None:
    """Bridge stdio to the gateway's /mcp for clients that only launch stdio servers.

    Configure the client to run `mcpgw connect --url URL --key KEY` as its MCP server.
    """
    import anyio

    from gateway.mcp.bridge import run_bridge

    if not key:
        typer.echo("error: no API key: pass --key or set MCPGW_API_KEY", err=True)
        raise typer.Exit(2)
    endpoint = url.rstrip("/") + (f"/mcp/servers/{server}" if server else "/mcp")
    try:
        anyio.run(run_bridge, endpoint, key)
    except Exception as exc:
        typer.echo(f"error: bridge to {endpoint} failed: {exc}", err=True)
        raise typer.Exit(1) from exc


@keys_app.command("list")
def keys_list(
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    all_users: Annotated[bool, typer.Option("--all", help="Every user's keys (admin).")] = False,
) -> None:
    """List API keys (yours, or everybody's with --all)."""
    from gateway.cli_client import GatewayClient, print_table

    page = GatewayClient(url, key).request("GET", "/api/v1/keys", params={"all": all_users})
    print_table(page["items"], ["id", "name", "prefix", "scopes", "expires_at", "last_used_at"])


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A label for the key.")],
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    scope: Annotated[list[str] | None, typer.Option("--scope", help="Scope (repeatable).")] = None,
    expires_in_days: Annotated[int | None, typer.Option(min=1, max=3650)] = None,
) -> None:
    """Create a key for yourself; the secret is printed once."""
    from gateway.cli_client import GatewayClient

    body: dict[str, Any] = {"name": name}
    if scope:
        body["scopes"] = scope
    if expires_in_days:
        body["expires_in_days"] = expires_in_days
    created = GatewayClient(url, key).request("POST", "/api/v1/keys", json=body)
    typer.echo(f"key {created['prefix']}… id {created['id']}", err=True)
    typer.echo(created["key"])


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="Id of the key to revoke.")],
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Revoke a key by id."""
    from gateway.cli_client import GatewayClient

    GatewayClient(url, key).request("DELETE", f"/api/v1/keys/{key_id}")
    typer.echo(f"revoked {key_id}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":  # `python -m gateway.cli`: how `serve` starts its job worker
    main()
