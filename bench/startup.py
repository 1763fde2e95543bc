"""Startup: seconds from `mcpgw serve` to `/readyz` OK on the embedded default.

A fresh data dir each run, so this includes creating the SQLite file, running
every migration and creating the first admin. Target: <= 2 s (after install).
"""

from __future__ import annotations

import argparse

from bench.common import GatewayProcess, median, print_table, write_results


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    times = []
    for _ in range(args.runs):
        gateway = GatewayProcess()
        try:
            times.append(gateway.start())
        finally:
            gateway.stop()
    result = {
        "runs": args.runs,
        "median_s": median(times),
        "min_s": min(times),
        "max_s": max(times),
    }
    print_table("startup: `mcpgw serve` to /readyz (fresh SQLite)", [result])
    write_results("startup", result)
    return result


if __name__ == "__main__":
    main()
