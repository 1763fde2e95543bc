"""Package servers run isolated: real npx servers in bubblewrap, as the gateway starts them.

What is proved here, each against the real `@modelcontextprotocol/server-everything`
or `server-filesystem` over npx: tools list and answer; the gateway's secret key and
database cannot be read; env and secrets reach only the sandboxed process (no host
process holds them on its command line or in its environment); an offline server
cannot open a TCP connection; loader variables are refused; an admin may opt out.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.servers.conftest import EVERYTHING, Gateway, text_of
from tests.support import wait_for

FILESYSTEM = "@modelcontextprotocol/server-filesystem"


@pytest.fixture(autouse=True)
def _needs_bwrap() -> None:
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is needed: apt-get install -y bubblewrap")


def _holders(value: str) -> list[tuple[int, str]]:
    """Host processes whose command line or environment contains ``value``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        for part in ("cmdline", "environ"):
            try:
                data = Path(f"/proc/{entry}/{part}").read_bytes()
            except OSError:
                continue
            if value.encode() in data:
                found.append((int(entry), part))
    return found


def _in_our_pid_namespace(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
    except OSError:
        return False


def _data_dir(gw: Gateway) -> Path:
    return Path(gw.app.state.gw.settings.data_dir).resolve()  # type: ignore[attr-defined]


async def test_isolated_npx_server_lists_calls_and_keeps_its_env_inside(gw: Gateway) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    secret = f"secret-{uuid.uuid4().hex}"
    r = await gw.register(
        {
            "name": "boxed",
            "type": "npx",
            "config": {"package": EVERYTHING, "args": ["stdio"]},
            "env": {"MARKER": marker},
            "secrets": {"API_TOKEN": secret},
        }
    )
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] == "healthy", r.json()["health"]
    assert {"echo", "get-sum", "get-env"} <= set(await gw.tools("boxed"))
    assert "hi there" in text_of(await gw.execute("boxed__echo", {"message": "hi there"}))
    assert "42" in text_of(await gw.execute("boxed__get-sum", {"a": 2, "b": 40}))

    env = json.loads(text_of(await gw.execute("boxed__get-env")))
    assert env["HOME"] == "/home/mcp"
    assert env["MARKER"] == marker and env["API_TOKEN"] == "***"  # masked on the way out
    assert not [name for name in env if name.startswith("MCPGW_")]

    # The values sit only in the sandboxed processes (another PID namespace): on no
    # host command line, in no host process's environment (bwrap's, the launcher's).
    for value in (marker, secret):
        holders = _holders(value)
        assert [h for h in holders if h[1] == "environ"], "the server process has it"
        assert [h for h in holders if h[1] == "cmdline"] == []
        assert [h for h in holders if _in_our_pid_namespace(h[0])] == []


async def test_isolated_server_cannot_read_the_secret_key_or_the_database(
    gw: Gateway, tmp_path: Path
) -> None:
    data_dir = _data_dir(gw)
    secret_key = data_dir / "secret.key"
    database = tmp_path / "gw.db"
    assert secret_key.is_file() and database.is_file()
    # The filesystem server may read anything under "/" — of what it can see.
    r = await gw.register(
        {"name": "files", "type": "npx", "config": {"package": FILESYSTEM, "args": ["/"]}}
    )
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] == "healthy", r.json()["health"]
    for path in (secret_key, database, data_dir / "mcpgw.db", tmp_path):
        result = await gw.execute("files__read_text_file", {"path": str(path)})
        assert result["isError"] is True, (path, result)
        assert "ENOENT" in text_of(result) or "not" in text_of(result).lower()
    # … while what it may see reads fine (a generated passwd: it is uid 1000 inside)
    passwd = await gw.execute("files__read_text_file", {"path": "/etc/passwd"})
    assert passwd["isError"] is False and "mcp:x:1000:1000" in text_of(passwd)
    listing = text_of(await gw.execute("files__list_directory", {"path": "/"}))
    assert "work" not in listing and "root" not in listing
    # its private home is writable and is where its npm cache lives
    home = text_of(await gw.execute("files__list_directory", {"path": "/home/mcp"}))
    assert ".npm" in home


@pytest.mark.parametrize(
    ("field", "name"),
    [
        ("env", "LD_PRELOAD"),
        ("secrets", "NODE_OPTIONS"),
        ("env", "BASH_ENV"),
        ("env", "ld_audit"),
        ("secrets", "PYTHONSTARTUP"),
    ],
)
async def test_loader_variables_are_refused_at_registration_and_update(
    gw: Gateway, field: str, name: str
) -> None:
    value = "/tmp/payload-value.so"
    body = {"name": "loader", "type": "npx", "config": {"package": EVERYTHING}}
    r = await gw.register({**body, field: {name: value}}, wait=False)
    assert r.status_code == 422, r.text
    payload = r.json()
    assert payload["code"] == "env_not_allowed"
    assert [e["field"] for e in payload["errors"]] == [f"{field}.{name}"]
    assert name in payload["message"] and value not in r.text

    r = await gw.register({**body, "enabled": False}, wait=False)
    assert r.status_code == 201, r.text
    r = await gw.client.patch(
        "/api/v1/servers/loader", json={field: {name: value}}, headers=gw.auth()
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "env_not_allowed" and value not in r.text


async def test_a_stored_loader_variable_keeps_the_server_from_starting(gw: Gateway) -> None:
    r = await gw.register(
        {
            "name": "legacy",
            "type": "npx",
            "config": {"package": EVERYTHING, "args": ["stdio"]},
            "enabled": False,
        }
    )
    assert r.status_code == 201, r.text
    # Registered before such names were refused: write it straight into the row.
    async with gw.app.state.gw.db.session() as session:  # type: ignore[attr-defined]
        from sqlalchemy import text as sql

        await session.execute(
            sql("update servers set env = :env where name = 'legacy'"),
            {"env": json.dumps({"NODE_OPTIONS": "--require /tmp/x.js"})},
        )
    r = await gw.client.patch("/api/v1/servers/legacy", json={"enabled": True}, headers=gw.auth())
    assert r.status_code == 200, r.text
    result = await gw.execute("legacy__echo", {"message": "x"})
    assert result["isError"] is True
    assert "NODE_OPTIONS" in text_of(result) and "not allowed" in text_of(result)
    health = await gw.health("legacy")
    assert health["status"] == "unhealthy" and "NODE_OPTIONS" in health["last_error"]


@pytest.fixture
def web_page() -> Iterator[str]:
    """A page on the host's loopback, which a server with the network can fetch."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello from the host\n" * 10
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/page.txt"
    server.shutdown()


async def test_an_offline_server_cannot_open_a_connection(gw: Gateway, web_page: str) -> None:
    for name, offline in (("online", False), ("offline", True)):
        r = await gw.register(
            {
                "name": name,
                "type": "npx",
                "config": {"package": EVERYTHING, "args": ["stdio"], "offline": offline},
            }
        )
        assert r.status_code == 201, r.text
        assert r.json()["health"]["status"] == "healthy", r.json()["health"]
    arguments = {"name": "page.txt.gz", "data": web_page, "outputType": "resource"}
    fetched = await gw.execute("online__gzip-file-as-resource", arguments)
    assert fetched["isError"] is False, fetched
    refused = await gw.execute("offline__gzip-file-as-resource", arguments)
    assert refused["isError"] is True, refused
    # the offline server still works otherwise (its package came from its own cache)
    assert "42" in text_of(await gw.execute("offline__get-sum", {"a": 40, "b": 2}))


async def test_only_an_admin_may_opt_a_server_out(gw: Gateway) -> None:
    r = await gw.client.post(
        "/api/v1/users", json={"email": "op@example.com", "role": "operator"}, headers=gw.auth()
    )
    user_id = r.json()["id"]
    r = await gw.client.post(
        "/api/v1/keys", json={"name": "k", "user_id": user_id}, headers=gw.auth()
    )
    operator = r.json()["key"]
    config: dict[str, Any] = {"package": EVERYTHING, "args": ["stdio"], "isolation": "none"}
    body = {"name": "host", "type": "npx", "config": config}
    r = await gw.register(body, key=operator)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "isolation_opt_out_forbidden"
    bundle = {
        "name": "host-bundle",
        "type": "bundle",
        "config": {"members": [{"name": "m", "type": "npx", "config": config}]},
    }
    assert (await gw.register(bundle, key=operator)).status_code == 403
    r = await gw.register({**body, "config": {**config, "offline": True}})
    assert r.status_code == 422 and "offline" in r.text

    r = await gw.register(body)  # the admin may, and it shows
    assert r.status_code == 201, r.text
    env = json.loads(text_of(await gw.execute("host__get-env")))
    assert env["HOME"] != "/home/mcp"  # a host process, with the host's home
    versions = (await gw.client.get("/api/v1/servers/host/versions", headers=gw.auth())).json()
    assert versions[-1]["summary"] == "registered without isolation"


async def test_removing_an_isolated_server_ends_its_processes_and_files(gw: Gateway) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    r = await gw.register(
        {
            "name": "short-lived",
            "type": "npx",
            "config": {"package": EVERYTHING, "args": ["stdio"]},
            "env": {"MARKER": marker},
        }
    )
    assert r.status_code == 201, r.text
    server_id = r.json()["id"]
    pids = {pid for pid, _ in _holders(marker)}
    assert pids and not [pid for pid in pids if _in_our_pid_namespace(pid)]
    assert (_data_dir(gw) / "servers" / server_id / "home").is_dir()
    r = await gw.client.delete("/api/v1/servers/short-lived", headers=gw.auth())
    assert r.status_code == 204

    async def all_gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() for pid in pids)

    await wait_for(all_gone, timeout=15)
    assert not (_data_dir(gw) / "servers" / server_id).exists()
