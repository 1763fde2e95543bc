"""Startup: seconds from `mcpgw serve` to `/readyz` OK on the embedded default.

`fresh`: a new data dir (creates the SQLite file, runs every migration, creates
the first admin). `restart`: the same data dir again (schema at head: the usual
start). Target: <= 2 s (after install).
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.common import GatewayProcess, median, print_table, write_results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    import tempfile

    times: dict[str, list[float]] = {"fresh": [], "restart": []}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="mcpgw-bench-data-") as data_dir:
            for kind in ("fresh", "restart"):
                gateway = GatewayProcess(data_dir=data_dir)
                try:
                    times[kind].append(gateway.start())
                finally:
                    gateway.stop()
    rows = [
        {
            "start": kind,
            "runs": args.runs,
            "median_s": median(values),
            "min_s": min(values),
            "max_s": max(values),
        }
        for kind, values in times.items()
    ]
    print_table("startup: `mcpgw serve` to /readyz (embedded SQLite)", rows)
    result = {row["start"]: row["median_s"] for row in rows}
    write_results("startup", {"rows": rows})
    return result


if __name__ == "__main__":
    main()
