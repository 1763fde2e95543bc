"""The interop matrix (GitHub issue 14) outside pytest: a table and a JSON file.

Runs what tests/interop runs (the shared logic is tests/interop/matrix.py): each
backend (feature servers on the Python `mcp` SDK 2.x and 1.x, FastMCP 4 and 2, the
TypeScript SDK new and old, each stateful/stateless x SSE/JSON; the npm reference
servers) is started, registered in one `mcpgw serve`, and driven directly and through
`/mcp` and `/mcp/servers/{name}` in both agent eras, plus the other agent-side clients
(`fastmcp.Client`, the TS SDK client, the Inspector CLI, `mcpgw connect`) on a few
backends. Prints one line per row (rows = backend x client x era x path, columns =
features; d/s = fast path / SDK path), the failing cells with their reasons, the n/a
reasons, and `mcpgw_tool_calls_total` by route per backend; writes
bench/results/interop.json.

    python -m bench.interop                      # everything (~10 min)
    python -m bench.interop --backends py2-sf-sse ts32-sl-json --no-clients
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from bench.common import BENCH_KEY, GatewayProcess, write_results
from tests.interop.agents import node24
from tests.interop.backends import catalog, inspector_installed
from tests.interop.matrix import Gateway, Matrix, route_table, table


async def _run(gateway: Gateway, names: list[str], clients: bool, parallel: int) -> Matrix:
    matrix = Matrix()
    gate = asyncio.Semaphore(parallel)

    async def one(name: str) -> None:
        async with gate:
            print(f"  {name} ...", flush=True)
            await matrix.run_backend(gateway, name, clients=None if clients else [])

    await asyncio.gather(*(one(name) for name in names))
    order = {name: i for i, name in enumerate(names)}
    matrix.rows.sort(key=lambda row: order[row.backend])
    return matrix


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", nargs="*", default=None, help=f"of {catalog()}")
    parser.add_argument("--no-clients", action="store_true", help="only the mcp SDK client")
    parser.add_argument("--parallel", type=int, default=2, help="backends driven at once")
    args = parser.parse_args(argv)
    names = args.backends or catalog()
    unknown = sorted(set(names) - set(catalog()))
    if unknown:
        raise SystemExit(f"unknown backend(s) {unknown}; choose from {catalog()}")
    process = GatewayProcess(
        env={"MCPGW_ALLOW_PRIVATE_URLS": "true", "MCPGW_INTERFACE_MODE": "list"}
    )
    process.start()
    try:
        with tempfile.TemporaryDirectory(prefix="mcpgw-interop-") as logs:
            launcher = None if args.no_clients else inspector_installed()
            gateway = Gateway(process.url, BENCH_KEY, Path(logs), launcher, node24())
            print(f"interop matrix: {len(names)} backend(s) behind {process.url}", flush=True)
            matrix = asyncio.run(_run(gateway, names, not args.no_clients, args.parallel))
    finally:
        process.stop()
    print("\n" + table(matrix.rows))
    print("\n" + route_table(matrix.routes))
    data = matrix.to_json()
    write_results("interop", data)
    return data


if __name__ == "__main__":
    main()
