"""The `mcpgw` command as a user runs it: real processes, a real server on a free port."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx

from tests.conftest import create_pg_database, drop_pg_database
from tests.support import BOOT, GRACEFUL, Server, run


def test_version_and_help(tmp_path: Path) -> None:
    r = run(tmp_path, "--version")
    assert r.returncode == 0 and r.stdout.startswith("mcpgw ")
    for args in (["--help"], ["serve", "--help"], ["db", "--help"], ["admin", "create-key", "-h"]):
        r = run(tmp_path, *args)
        assert r.returncode == 0, r.stderr
        assert "Usage" in r.stdout
    assert "create-key" in run(tmp_path, "admin", "--help").stdout


def test_bad_configuration_names_the_setting(tmp_path: Path) -> None:
    r = run(tmp_path, "db", "upgrade", MCPGW_PORT="eighty")
    assert r.returncode == 2
    assert "MCPGW_PORT" in r.stderr
    assert "Traceback" not in r.stderr


def test_db_commands_on_sqlite(tmp_path: Path) -> None:
    r = run(tmp_path, "db", "current")
    assert "behind" in r.stdout
    from gateway import migrate

    head = migrate.head_revision()
    assert head is not None
    assert run(tmp_path, "db", "upgrade").stdout.strip().endswith(head)
    assert "up to date" in run(tmp_path, "db", "current").stdout
    assert "base" in run(tmp_path, "db", "downgrade", "base").stdout
    assert run(tmp_path, "db", "upgrade").returncode == 0
    assert (tmp_path / "data" / "mcpgw.db").is_file()


def test_db_upgrade_downgrade_upgrade_on_postgresql(tmp_path: Path) -> None:
    url = create_pg_database("mcpgw_cli")
    try:
        env = {"MCPGW_DATABASE_URL": url}
        r = run(tmp_path, "db", "upgrade", **env)
        assert r.returncode == 0, r.stderr
        assert "up to date" in run(tmp_path, "db", "current", **env).stdout
        r = run(tmp_path, "db", "downgrade", "base", **env)
        assert r.returncode == 0 and "base" in r.stdout, r.stderr
        assert run(tmp_path, "db", "upgrade", **env).returncode == 0
        assert "up to date" in run(tmp_path, "db", "current", **env).stdout
    finally:
        drop_pg_database(url)


def test_serve_refuses_an_unmigrated_postgresql(
    tmp_path: Path, server_factory: type[Server]
) -> None:
    url = create_pg_database("mcpgw_cli")
    try:
        server = server_factory(MCPGW_DATABASE_URL=url, MCPGW_BOOTSTRAP_API_KEY=BOOT)
        assert server.proc.wait(timeout=30) != 0
        assert "mcpgw db upgrade" in server.output()
    finally:
        drop_pg_database(url)


def test_admin_create_key_rejects_bad_input(tmp_path: Path) -> None:
    r = run(tmp_path, "admin", "create-key", "--user", "x@example.com", "--role", "wizard")
    assert r.returncode == 2 and "unknown role" in r.stderr
    r = run(tmp_path, "admin", "create-key", "--user", "x@example.com", "--scope", "root")
    assert r.returncode == 2 and "scope" in r.stderr
    r = run(tmp_path, "admin", "create-key", "--user", "not-an-email")
    assert r.returncode == 2


def test_serve_end_to_end(tmp_path: Path, server_factory: type[Server]) -> None:
    # a key minted offline before the first start
    r = run(tmp_path, "admin", "create-key", "--user", "ops@example.com", "--role", "operator")
    assert r.returncode == 0, r.stderr
    ops_key = r.stdout.strip()
    assert ops_key.startswith("mgw_live_")

    server = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT)
    server.wait_ready()
    me = httpx.get(f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {BOOT}"})
    assert me.status_code == 200 and me.json()["user"]["role"] == "admin"
    anon = httpx.get(f"{server.url}/api/v1/me")
    assert anon.status_code == 401 and anon.json()["code"] == "unauthenticated"
    ops = httpx.get(f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {ops_key}"})
    assert ops.json()["user"]["role"] == "operator"

    cli_env = {"MCPGW_URL": server.url, "MCPGW_API_KEY": BOOT}
    r = run(tmp_path, "whoami", **cli_env)
    assert r.returncode == 0 and json.loads(r.stdout)["user"]["email"] == "admin@localhost"
    r = run(tmp_path, "keys", "create", "deploy", "--scope", "tools:execute", **cli_env)
    assert r.returncode == 0, r.stderr
    new_key = r.stdout.strip()
    listing = run(tmp_path, "keys", "list", **cli_env).stdout
    assert "deploy" in listing and new_key not in listing
    key_id = next(line.split()[0] for line in listing.splitlines() if " deploy " in line)
    assert run(tmp_path, "keys", "revoke", key_id, **cli_env).returncode == 0
    r = run(tmp_path, "whoami", "--url", server.url, "--key", new_key)
    assert r.returncode == 1 and "401" in r.stderr
    r = run(tmp_path, "whoami", "--url", "http://127.0.0.1:1")
    assert r.returncode == 2 and "MCPGW_API_KEY" in r.stderr
    r = run(tmp_path, "whoami", "--url", "http://127.0.0.1:1", "--key", BOOT)
    assert r.returncode == 3 and "cannot reach" in r.stderr
    # Every key change is audited: the offline one (route cli), the API's, the revoke.
    r = run(tmp_path, "audit", "search", "--action", "key.create", "--json", **cli_env)
    created = json.loads(r.stdout)["items"]
    assert sorted((str(i["route"]), i["actor"]["auth_method"]) for i in created) == [
        ("None", "api_key"),
        ("None", "bootstrap"),
        ("cli", "cli"),
    ], created
    r = run(tmp_path, "audit", "search", "--action", "key.revoke", "--json", **cli_env)
    assert [i["target"] for i in json.loads(r.stdout)["items"]] == [key_id]

    assert server.stop() in GRACEFUL
    log = server.output()
    assert "Application shutdown complete" in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "gateway.access"]
    assert access and all(line["request_id"] and line["status"] for line in access)
    assert any(line["path"] == "/api/v1/me" and line["status"] == 401 for line in access)
    for secret in (BOOT, ops_key, new_key):
        assert secret not in log
    # last-used times are flushed on shutdown, not lost
    with sqlite3.connect(tmp_path / "data" / "mcpgw.db") as conn:
        used = conn.execute("select count(*) from api_keys where last_used_at is not null")
        assert used.fetchone()[0] >= 2


def test_generated_admin_key_is_printed_once(tmp_path: Path, server_factory: type[Server]) -> None:
    first = server_factory()
    first.wait_ready()
    assert first.stop() in GRACEFUL
    out = first.output()
    keys = [w for w in out.split() if w.startswith("mgw_live_")]
    assert len(keys) == 1, out
    second = server_factory()
    second.wait_ready()
    me = httpx.get(f"{second.url}/api/v1/me", headers={"Authorization": f"Bearer {keys[0]}"})
    assert me.status_code == 200 and me.json()["user"]["role"] == "admin"
    second.stop()
    assert "mgw_live_" not in second.output()
