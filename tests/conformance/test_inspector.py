"""The MCP Inspector CLI (v2, Node 24) against the gateway's `/mcp` with an API key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conformance.conftest import HERE, INSPECTOR, node
from tests.support import BOOT, Server


def _inspect(url: str, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [
            node(),
            str(INSPECTOR),
            "--cli",
            url,
            "--transport",
            "http",
            "--header",
            f"Authorization: Bearer {BOOT}",
            *args,
        ],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_inspector_lists_and_calls(suite: Path, server_factory: type[Server]) -> None:
    gateway = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT)
    gateway.wait_ready()
    listed = _inspect(f"{gateway.url}/mcp", "--method", "tools/list")
    names = [t["name"] for t in listed["tools"]]  # type: ignore[index]
    assert "essentials__calculator_evaluate" in names
    called = _inspect(
        f"{gateway.url}/mcp",
        "--method",
        "tools/call",
        "--tool-name",
        "essentials__calculator_evaluate",
        "--tool-arg",
        "expression=7*6",
    )
    assert called["content"][0]["text"] == "42"  # type: ignore[index]
