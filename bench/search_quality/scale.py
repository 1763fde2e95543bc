"""Tool search at 10,000 tools, in process: `python -m bench.search_quality.scale`.

The real catalog is repeated under renamed servers up to the size asked
(each copy's text differs, so nothing is served from a cache by accident).
Reports, as the median of several runs: loading the model, embedding every tool
(cold), building the lexical index, a full index build, an incremental rebuild
after one server's tools changed, the index's memory (tracemalloc: the index
alone, then the model), and hybrid query latency (p50/p95) over the benchmark's
queries. The latency through `/mcp` is `python -m bench.catalog_scale`.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from mcp import types

from bench.common import percentile, print_table, write_results
from bench.search_quality.dataset import load_queries, load_tools
from gateway.mcp.search import ToolIndex, current, dense, fields
from gateway.mcp.search.lexical import LexicalIndex


def catalog(size: int, generation: int = 0) -> list[types.Tool]:
    """``size`` real tools, servers renamed per copy (``github`` → ``github7``)."""
    real = load_tools()
    tools = []
    for copy in range(size // len(real) + 1):
        for tool in real:
            server, _, name = tool.name.partition("__")
            text = f"{tool.description} (g{generation})" if generation else tool.description
            tools.append(
                tool.model_copy(update={"name": f"{server}{copy}__{name}", "description": text})
            )
    return tools[:size]


def _median_of(runs: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _clear_caches() -> None:
    dense._vectors.clear()
    fields._CACHE.clear()


def measure(size: int, runs: int) -> dict[str, Any]:
    started = time.perf_counter()
    embedder = dense.model("wordllama").result()
    load_s = time.perf_counter() - started
    tools = catalog(size)
    texts = [fields.dense_text(t) for t in tools]
    embed_s = _median_of(runs, lambda: embedder.embed(texts))
    docs = [fields.fields_of(t) for t in tools]
    lexical_s = _median_of(runs, lambda: LexicalIndex(docs, current()))

    def full_build() -> None:
        _clear_caches()
        ToolIndex(tools).wait_dense()

    build_s = _median_of(runs, full_build)
    # One server's catalog changes: its tools get new descriptions, the rest stay.
    changed_server = tools[0].name.partition("__")[0]
    changed = [
        t.model_copy(update={"description": f"{t.description} (changed)"})
        if t.name.startswith(changed_server + "__")
        else t
        for t in tools
    ]
    ToolIndex(tools).wait_dense()
    incremental_s = _median_of(runs, lambda: ToolIndex(changed).wait_dense())
    # The index alone (the model is loaded and shared by every index).
    _clear_caches()
    gc.collect()
    tracemalloc.start()
    index = ToolIndex(tools)
    index.wait_dense()
    index_mib = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    model_mib = embedder._table.nbytes / 2**20
    latencies = []
    queries = [q.text for q in load_queries([t.name for t in load_tools()])]
    for _ in range(3):
        for query in queries:
            t0 = time.perf_counter()
            index.search(query, 10)
            latencies.append((time.perf_counter() - t0) * 1000)
    return {
        "tools": size,
        "model_load_s": load_s,
        "embed_all_s": embed_s,
        "lexical_build_s": lexical_s,
        "full_build_s": build_s,
        "incremental_rebuild_s": incremental_s,
        "index_mib": index_mib,
        "model_mib": model_mib,
        "query_p50_ms": percentile(latencies, 50),
        "query_p95_ms": percentile(latencies, 95),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tools", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    row = measure(args.tools, args.runs)
    print_table("tool search at scale (in process, medians)", [row])
    write_results("search_scale", {"rows": [row]})
    return row


if __name__ == "__main__":
    main()
