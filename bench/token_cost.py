"""Token cost: what the tool surface costs an agent's context, `list` vs `search_execute`.

For each catalog size, the bytes of the `tools/list` result an agent gets through
`/mcp` with a `list`-mode key (every definition) and with a `search_execute`-mode
key (the two meta-tools), and of one `SEARCH_TOOLS` answer (limit 10), which is
what an agent then pays per search. Tokens are estimated as bytes / 4 (a common
rule of thumb for JSON with English text; real tokenizers differ by model).
"""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from bench.catalog_setup import CatalogGateway
from bench.common import print_table, write_results

BYTES_PER_TOKEN = 4


def _tools_bytes(body: bytes) -> int:
    """Size of the tools array alone (what a client puts in the model's context)."""
    return len(orjson.dumps(orjson.loads(body)["result"]["tools"]))


def measure(tools: int) -> dict[str, Any]:
    with CatalogGateway(tools) as gw:
        listed = _tools_bytes(gw.call("tools/list", mode="list"))
        meta = _tools_bytes(gw.call("tools/list", mode="search_execute"))
        search = gw.call(
            "tools/call",
            {"name": "SEARCH_TOOLS", "arguments": {"query": "create an invoice", "limit": 10}},
            mode="search_execute",
        )
        search_bytes = len(orjson.dumps(orjson.loads(search)["result"]["content"]))
    return {
        "tools": tools,
        "list_bytes": listed,
        "list_tokens": listed // BYTES_PER_TOKEN,
        "search_execute_bytes": meta,
        "search_execute_tokens": meta // BYTES_PER_TOKEN,
        "ratio": listed / meta,
        "one_search_tokens": search_bytes // BYTES_PER_TOKEN,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tools", type=int, nargs="+", default=[10, 30, 100, 300, 1000])
    args = parser.parse_args(argv)
    rows = [measure(n) for n in args.tools]
    print_table("token cost of the tool surface: list vs search_execute", rows)
    write_results("token_cost", {"bytes_per_token": BYTES_PER_TOKEN, "rows": rows})
    return rows


if __name__ == "__main__":
    main()
