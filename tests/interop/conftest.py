"""One real gateway (`mcpgw serve`) for the whole interop matrix, and the matrix so far.

Backends are started and registered one by one, the first time a test asks for a
row of theirs (tests/interop/matrix.py runs all of a backend's rows at once); the
table of every row run is printed at the end of the session and written to
test-artifacts/interop-matrix.txt and .json.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.interop.agents import node24
from tests.interop.backends import Missing, inspector_installed
from tests.interop.matrix import Gateway, Matrix, Row, route_table, table
from tests.support import BOOT, Server

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
GATEWAY_ENV = {
    "MCPGW_BOOTSTRAP_API_KEY": BOOT,
    "MCPGW_ALLOW_PRIVATE_URLS": "true",  # the backends are on loopback
    "MCPGW_INTERFACE_MODE": "list",  # every tool listed, however many backends
}
_RUN: list[Matrix] = []


@dataclass
class Interop:
    gateway: Gateway
    server: Server
    matrix: Matrix = field(default_factory=Matrix)
    done: dict[str, list[Row] | str] = field(default_factory=dict)

    def rows_of(self, backend: str) -> list[Row]:
        """The rows of ``backend``, run on first use (a setup failure fails them all)."""
        if backend not in self.done:
            try:
                self.done[backend] = asyncio.run(self.matrix.run_backend(self.gateway, backend))
            except Missing as exc:
                self.done[backend] = str(exc)
        found = self.done[backend]
        if isinstance(found, str):
            pytest.fail(found, pytrace=False)
        return found


@pytest.fixture(scope="session")
def interop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Interop]:
    tmp = tmp_path_factory.mktemp("interop")
    try:
        launcher = inspector_installed()
    except Missing as exc:
        pytest.fail(str(exc), pytrace=False)
    server = Server(tmp, None, **GATEWAY_ENV)
    try:
        server.wait_ready()
        gateway = Gateway(server.url, BOOT, tmp, inspector=launcher, node=node24())
        found = Interop(gateway, server)
        _RUN.append(found.matrix)
        yield found
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows = [row for matrix in _RUN for row in matrix.rows]
    if not rows:
        return
    text = table(rows) + "\n\n" + route_table({k: v for m in _RUN for k, v in m.routes.items()})
    terminalreporter.write_sep("=", "interop matrix")
    terminalreporter.write_line(text)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "interop-matrix.txt").write_text(text + "\n")
    merged = {"rows": [r for m in _RUN for r in m.to_json()["rows"]]}
    (ARTIFACTS / "interop-matrix.json").write_text(json.dumps(merged, indent=1))
