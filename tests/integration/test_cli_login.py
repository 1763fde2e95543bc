"""`mcpgw login` as a user runs it (issue 18): a real gateway process, the real CLI
process, the OAuth flow through the gateway's sign-in and consent pages. The person at
the browser is scripted (tests/fixtures/scripted_browser.py, run as $BROWSER, signing in
with an API key); everything else is real, the loopback redirect included."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import BOOT, MCPGW, Server, _env, run

BROWSER = Path(__file__).resolve().parents[1] / "fixtures" / "scripted_browser.py"


@pytest.fixture(scope="module")
def gateway(module_server_factory: type[Server]) -> Server:
    server = module_server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT)
    server.wait_ready()
    return server


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "config"), "SIGN_IN_KEY": BOOT, **extra}


def test_login_in_the_browser_then_commands_need_no_key(gateway: Server, tmp_path: Path) -> None:
    env = cli_env(tmp_path, BROWSER=f"{sys.executable} {BROWSER} %s")
    r = run(tmp_path, "login", "--url", gateway.url, **env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Signed in to" in r.stdout and "admin@localhost (admin)" in r.stdout
    stored = tmp_path / "config" / "mcpgw" / "credentials.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert "mgw_at_" in stored.read_text() and BOOT not in stored.read_text()
    me = run(tmp_path, "whoami", "--url", gateway.url, **env)
    assert me.returncode == 0, me.stderr
    assert '"email": "admin@localhost"' in me.stdout
    out = run(tmp_path, "logout", "--url", gateway.url, **env)
    assert out.returncode == 0 and "Signed out" in out.stdout
    after = run(tmp_path, "whoami", "--url", gateway.url, **env)
    assert after.returncode != 0 and "mcpgw login" in after.stderr


def test_login_without_a_browser_reads_the_code(gateway: Server, tmp_path: Path) -> None:
    env = _env(tmp_path, **cli_env(tmp_path))
    proc = subprocess.Popen(
        [MCPGW, "login", "--no-browser", "--url", gateway.url],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    url = ""
    for _ in range(10):
        line = proc.stdout.readline()
        if line.strip().startswith("http"):
            url = line.strip()
            break
    assert "/oauth/authorize?" in url
    page = subprocess.run(
        [sys.executable, str(BROWSER), url],
        env={**os.environ, "SIGN_IN_KEY": BOOT, "STOP_AT_GATEWAY_PAGE": "/oauth/code"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    code = re.search(r"Paste this code into the terminal: ([\w-]+)", page)
    assert code is not None, page
    out, err = proc.communicate(code.group(1) + "\n", timeout=60)
    assert proc.returncode == 0, out + err
    assert "Signed in to" in out
    me = run(tmp_path, "whoami", "--url", gateway.url, **cli_env(tmp_path))
    assert me.returncode == 0, me.stderr


def test_login_to_a_gateway_that_is_not_there(tmp_path: Path) -> None:
    r = run(tmp_path, "whoami", "--url", "http://127.0.0.1:9", **cli_env(tmp_path))
    assert r.returncode != 0
    assert "no credential" in r.stderr and "Traceback" not in r.stderr
