"""The interop matrix (GitHub issue 14): every backend, era, path and client, cell by cell.

Each test is one row of tests/interop/matrix.py: an agent (the `mcp` SDK client in
the 2025-11-25 or the 2026-07-28 era, `fastmcp.Client`, the TypeScript SDK client,
the Inspector CLI, `mcpgw connect`) connected to one backend directly or through a
real gateway's `/mcp` or `/mcp/servers/{name}`. A row passes when none of its cells
fails: every cell the backend supports (it passes the same cell directly, in the same
era) must pass through the gateway. The table is printed at the end of the session.

Run one backend: `.venv/bin/pytest tests/interop -k py2-sf-sse`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.agents import ERAS
from tests.interop.backends import SDKS, catalog
from tests.interop.conftest import Interop
from tests.interop.matrix import CLIENT_BACKENDS, CLIENT_ERAS, CLIENTS, PATHS


def _rows() -> Iterator[tuple[str, str, str, str]]:
    for name in catalog():
        for era in ERAS:
            yield name, "mcp-sdk", era, "direct"
        for era in ERAS:
            for path in PATHS:
                yield name, "mcp-sdk", era, path
        if name in CLIENT_BACKENDS:
            for client in CLIENTS:
                for asked in CLIENT_ERAS[client]:
                    for path in PATHS:
                        yield name, client, asked or "client's choice", path


ROWS = list(_rows())


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("backend", "client", "era", "path"), ROWS, ids=[" ".join(r) for r in ROWS]
)
def test_row(interop: Interop, backend: str, client: str, era: str, path: str) -> None:
    rows = interop.rows_of(backend)
    row = next(
        r for r in rows if (r.backend, r.client, r.era, r.path) == (backend, client, era, path)
    )
    failures = row.failures()
    problem = interop.matrix.errors.get(backend)
    assert not failures, (
        f"{row.key} (negotiated {row.protocol}): {len(failures)} cell(s) fail"
        + (f"; registration: {problem}" if problem else "")
        + "".join(f"\n  {feature}: {reason}" for feature, reason in failures.items())
    )
    if (
        path == "direct"
        and backend.endswith("-sf-sse")
        and backend.split("-")[0] in {sdk.key for sdk in SDKS}
    ):
        # our own fixture servers, stateful with SSE, must do all they claim
        lacking = {
            f: c.reason for f, c in row.cells.items() if c.reason.startswith("the backend itself")
        }
        assert not lacking, f"fixture server {backend} lacks: {lacking}"
