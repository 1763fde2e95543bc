"""The server generator: how long an API description takes to become a draft, and a
draft to become a loaded server (embedded default: SQLite, the worker `serve` starts).

For each document (the real Swagger Petstore 3, 19 operations, YAML text; STAPI, 120
operations, a JSON object; both from tests/fixtures/openapi/) the client times
- `submit`: `POST /api/v1/servers/generate` answered (the document is read, checked by
  FastMCP's parser and queued in the request),
- `to review`: submit → the draft's `result` event at an SSE client (the worker reads
  the document again and lists its tools),
- `approve`: `POST /api/v1/jobs/{id}/approve` of ten tools answered (registered and
  loaded in-process; its tools listed).
Each run starts a fresh gateway, warms the worker with one `noop` job, then generates
``--drafts`` servers per document; the table shows the median of each run's p50.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import BENCH_KEY, GatewayProcess, median, percentile, print_table, write_results

AUTH = {"Authorization": f"Bearer {BENCH_KEY}"}
SPECS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "openapi"


def _follow(client: httpx.Client, job_id: str) -> str:
    event = ""
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("result", "error", "cancelled"):
                return event
    return event


def time_draft(client: httpx.Client, document: Any, name: str) -> dict[str, float]:
    """Milliseconds: submit answered, draft at the client, approval answered."""
    started = time.perf_counter()
    body = {"openapi": document, "name": name, "base_url": "https://api.example.com"}
    r = client.post("/api/v1/servers/generate", json=body)
    r.raise_for_status()
    submitted = time.perf_counter()
    job_id = r.json()["job_id"]
    if _follow(client, job_id) != "result":
        raise RuntimeError(f"generation {job_id} did not end in review")
    drafted = time.perf_counter()
    tools = [t["name"] for t in client.get(f"/api/v1/jobs/{job_id}").json()["result"]["tools"]]
    approve = client.post(f"/api/v1/jobs/{job_id}/approve", json={"tools": tools[:10]})
    approve.raise_for_status()
    done = time.perf_counter()
    return {
        "submit": (submitted - started) * 1000,
        "review": (drafted - started) * 1000,
        "approve": (done - drafted) * 1000,
    }


def run(drafts: int) -> dict[str, dict[str, list[float]]]:
    """One run on a fresh gateway: the timings per document."""
    documents = {
        "petstore3 (19 ops)": (SPECS / "petstore3.yaml").read_text(),
        "stapi (120 ops)": json.loads((SPECS / "stapi.json").read_text()),
    }
    gateway = GatewayProcess()
    out: dict[str, dict[str, list[float]]] = {}
    try:
        gateway.start()
        with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=120) as client:
            warm = client.post("/api/v1/jobs", json={"kind": "noop", "input": {}})
            _follow(client, warm.json()["job_id"])
            for n, (label, document) in enumerate(documents.items()):
                samples = [time_draft(client, document, f"b{n}-{i}") for i in range(drafts)]
                out[label] = {k: [s[k] for s in samples] for k in ("submit", "review", "approve")}
    finally:
        gateway.stop()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--drafts", type=int, default=5)
    args = parser.parse_args(argv)
    runs = [run(args.drafts) for _ in range(args.runs)]
    rows = []
    for label in runs[0]:
        row: dict[str, Any] = {"document": label, "runs": args.runs, "drafts/run": args.drafts}
        for key in ("submit", "review", "approve"):
            row[f"{key}_p50_ms"] = median([percentile(r[label][key], 50) for r in runs])
        rows.append(row)
    print_table("server generator: document to draft to loaded server", rows)
    write_results("generate", {"rows": rows})
    return {row["document"]: row for row in rows}


if __name__ == "__main__":
    main()
