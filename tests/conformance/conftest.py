"""Fixture: the Node-based MCP test tools, installed from package-lock.json on first use."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conformance.test_conformance import HERE, INSPECTOR, SUITE


@pytest.fixture(scope="session")
def suite() -> Path:
    if not (SUITE.exists() and INSPECTOR.exists()):
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
