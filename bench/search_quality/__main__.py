"""Tool search quality: `python -m bench.search_quality`.

Ranks every query of ``data/queries.json`` over the real catalog of
``data/tools.json`` with BM25 only (today's SEARCH_TOOLS, and the new BM25F
alone), dense only and hybrid, and prints R@1, R@5, R@10, MRR and nDCG@10 on the
tuning and the held-out split. ``--tune`` searches the knobs on the tuning split
only. See README.md for how the data was made.
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import replace
from typing import Any

from bench.common import print_table, write_results
from bench.search_quality import baseline
from bench.search_quality.dataset import SPLITS, Query, load_queries, load_tools
from bench.search_quality.metrics import Ranking, summarize
from gateway.mcp.search import ToolIndex, Tuning, current

LIMIT = 10
SYSTEMS = ("bm25 (before)", "bm25f", "dense", "hybrid")


def rankings(index: ToolIndex, queries: list[Query], mode: Any) -> list[Ranking]:
    """Each query's top 10 as rank positions (a hit and its folded alternatives)."""
    return [
        [(hit.tool.name, *hit.alternatives) for hit in index.search(q.text, LIMIT, mode=mode)]
        for q in queries
    ]


def baseline_rankings(tools: list[Any], queries: list[Query]) -> list[Ranking]:
    index = baseline.ToolIndex(tools)
    return [[(tool.name,) for tool, _ in index.search(q.text, LIMIT)] for q in queries]


def evaluate(tools: list[Any], queries: list[Query], tuning: Tuning) -> list[dict[str, Any]]:
    """One row per (split, system) with the five metrics."""
    index = ToolIndex(tools, tuning)
    index.wait_dense()
    by_system = {
        "bm25 (before)": baseline_rankings(tools, queries),
        "bm25f": rankings(index, queries, "lexical"),
        "dense": rankings(index, queries, "dense"),
        "hybrid": rankings(index, queries, "hybrid"),
    }
    rows = []
    for split in SPLITS:
        chosen = [i for i, q in enumerate(queries) if q.split == split]
        relevants = [set(queries[i].relevant) for i in chosen]
        for system in SYSTEMS:
            ranked = [by_system[system][i] for i in chosen]
            rows.append(
                {
                    "split": split,
                    "system": system,
                    "queries": len(chosen),
                    **summarize(ranked, relevants),
                }
            )
    return rows


GRID: dict[str, list[Any]] = {
    "lexical_weight": [0.4, 0.5, 0.6],
    "weight_name": [2.0, 3.0, 4.0],
    "weight_description": [1.0, 1.5],
    "weight_params": [0.5, 1.0],
    "synonym_weight": [0.3, 0.5],
    "dense_text_chars": [200, 1000],
}


def tune(tools: list[Any], queries: list[Query]) -> list[dict[str, Any]]:
    """Grid search on the tuning split only; the best settings first."""
    tuning_queries = [q for q in queries if q.split == "tune"]
    relevants = [set(q.relevant) for q in tuning_queries]
    results = []
    keys = list(GRID)
    for values in itertools.product(*(GRID[k] for k in keys)):
        tuning = replace(current(), **dict(zip(keys, values, strict=True)))
        index = ToolIndex(tools, tuning)
        index.wait_dense()
        scores = summarize(rankings(index, tuning_queries, "hybrid"), relevants)
        results.append({**dict(zip(keys, values, strict=True)), **scores})
    results.sort(key=lambda r: -(r["R@1"] + r["R@5"] + r["MRR"]))
    return results[:10]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tune", action="store_true", help="grid-search on the tuning split")
    args = parser.parse_args(argv)
    tools = load_tools()
    queries = load_queries([t.name for t in tools])
    servers = len({t.name.split("__")[0] for t in tools})
    print(
        f"catalog: {len(tools)} tools from {servers} servers; {len(queries)} queries "
        f"({sum(q.split == 'tune' for q in queries)} tuning, "
        f"{sum(q.split == 'heldout' for q in queries)} held out)"
    )
    unknown = {n for q in queries for n in q.relevant} - {t.name for t in tools}
    if unknown:
        raise SystemExit(f"queries name tools not in the catalog: {sorted(unknown)}")
    if args.tune:
        best = tune(tools, queries)
        print_table("best settings on the tuning split (hybrid)", best)
        return best
    started = time.perf_counter()
    rows = evaluate(tools, queries, current())
    print_table(f"search quality (top {LIMIT}; {time.perf_counter() - started:.1f} s)", rows)
    write_results("search_quality", {"rows": rows})
    return rows


if __name__ == "__main__":
    main()
