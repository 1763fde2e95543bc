"""The docs' copy-paste examples run as written against a live gateway.

Every fenced ``sh`` block that follows a ``<!-- doctest -->`` line is executed,
in order, in one bash session per page (``set -euo pipefail``), with
``MCPGW_URL`` and ``MCPGW_API_KEY`` pointing at a fresh admin gateway.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import BOOT, Server

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"<!-- doctest -->\s*\n```sh\n(.*?)```", re.S)
PAGES = sorted(p for p in DOCS.glob("*.md") if BLOCK.search(p.read_text()))


def test_docs_have_tested_examples() -> None:
    assert {p.name for p in PAGES} >= {
        "authentication.md",
        "generation.md",
        "identity.md",
        "jobs.md",
        "operations.md",
        "policy.md",
        "resilience.md",
        "servers.md",
        "mcp.md",
        "observability.md",
        "skills.md",
        "sandboxes.md",
        "security.md",
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_doc_examples_run(page: Path, tmp_path: Path, server_factory: type[Server]) -> None:
    server = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT)
    server.wait_ready()
    script = "set -euo pipefail\n" + "\n".join(BLOCK.findall(page.read_text()))
    env = {
        **os.environ,
        "MCPGW_URL": server.url,
        "MCPGW_API_KEY": BOOT,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{page.name} examples failed:\n{result.stdout}\n{result.stderr}"
