"""The official conformance suite against a reference server no one here wrote, on its own
and behind the gateway: the gateway must not fail what the server passes.

The server is `@modelcontextprotocol/server-everything` (the npm reference server, built
on the official TypeScript SDK; pinned in package-lock.json) over Streamable HTTP,
registered as a `remote` server and reached through `/mcp/servers/everything`, with the
gateway's `protocol` for it left at `auto` and pinned to `2025-11-25`, the suite speaking
either era. The baseline is the suite run directly against the same server in the same
test, compared check by check:

- every scenario that passes directly passes through the gateway;
- every check that succeeds directly does not fail through the gateway.

The gateway may pass more than the server does: it answers the transport's own checks
itself (Host/Origin validation, 404 for a terminated session), and it bridges the
2026-07-28 era, which server-everything does not speak. And the comparison has to be
this one-sided, because server-everything does not provide the fixture tools, resources
and prompts the scenarios call (`test_simple_text`, `test://static-text`, ...): many
checks fail directly, so "no check fails that passed" is what "the same result" means.

Not compared: `/mcp`, where the fixture names do not exist by design (tools are
`everything__<tool>`, resources are namespaced, and past the interface threshold only
SEARCH_TOOLS/EXECUTE_TOOL are listed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.conftest import EVERYTHING, SuiteRun, node, register, run_suite
from tests.support import Server, free_port, spawn_http

ERAS = ["2025-11-25", "2026-07-28"]
PROTOCOLS = ["auto", "2025-11-25"]  # the gateway's `protocol` for the backend


@pytest.fixture
def everything(suite: Path) -> Iterator[str]:
    """server-everything over Streamable HTTP on a free port; yields its URL."""
    port = free_port()
    proc = spawn_http([node(), str(EVERYTHING), "streamableHttp"], port, env={"PORT": str(port)})
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait()


def regressions(direct: SuiteRun, gateway: SuiteRun) -> list[str]:
    """What passes directly but fails through the gateway, with the suite's messages."""
    found = []
    for scenario, failed in sorted(direct.scenarios.items()):
        if not failed and gateway.scenarios.get(scenario, True):
            messages = [
                f"{check}: {message}"
                for (name, check), (status, message) in gateway.checks.items()
                if name == scenario and status == "FAILURE"
            ]
            found.append(f"scenario {scenario}: {'; '.join(messages) or 'not run'}")
    for (scenario, check), (status, _) in sorted(direct.checks.items()):
        through = gateway.checks.get((scenario, check))
        if status == "SUCCESS" and through is not None and through[0] == "FAILURE":
            found.append(f"check {scenario}/{check}: {through[1]}")
    return found


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("era", ERAS)
def test_the_gateway_fails_nothing_server_everything_passes(
    suite: Path,
    everything: str,
    open_gateway: Server,
    tmp_path: Path,
    era: str,
    protocol: str,
) -> None:
    direct = run_suite(suite, everything, tmp_path / "direct", "--requirements", era)
    assert len(direct.scenarios) >= 30, direct.output[-3000:]
    register(open_gateway, "everything", "remote", {"url": everything, "protocol": protocol})
    url = f"{open_gateway.url}/mcp/servers/everything"
    through = run_suite(suite, url, tmp_path / "gateway", "--requirements", era)
    assert through.scenarios.keys() >= direct.scenarios.keys(), through.output[-3000:]
    assert not regressions(direct, through), "\n".join(regressions(direct, through))
