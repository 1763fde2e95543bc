"""`/metrics` exposes every family the operators' dashboards use, and they move.

A real gateway process and a real backend process (tests/fixtures/http_backend.py);
calls through the fast path, the SDK path and REST; the scrape is parsed with
prometheus_client's own parser.
"""

# ruff: noqa: F811 (the `gateway` and `backend` fixtures come from test_fastpath)
from __future__ import annotations

import time
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.mcp.test_endpoint import _new_key
from tests.integration.mcp.test_fastpath import (  # noqa: F401 (fixtures)
    AUTH,
    _modern_call,
    backend,
    gateway,
)
from tests.support import Server
from tests.support_mcp import LEGACY_INIT

FAMILIES = {
    # name (as the parser reports it): labels every sample has
    "mcpgw_http_requests": {"method", "route", "status"},
    "mcpgw_http_request_seconds": {"method", "route"},
    "mcpgw_tool_calls": {"server", "tool", "route", "outcome"},
    "mcpgw_tool_call_seconds": {"server", "tool", "route"},
    "mcpgw_calls_refused": {"server", "reason"},
    "mcpgw_tool_result_tokens": {"server"},
    "mcpgw_backend_status": {"server", "status"},
    "mcpgw_backend_in_flight": {"server"},
    "mcpgw_backend_restarts": {"server"},
    "mcpgw_backend_ping_seconds": {"server"},
    "mcpgw_mcp_sessions": {"era"},
    "mcpgw_sandboxes": {"provider", "status"},
    "mcpgw_sandbox_cpu_seconds": {"provider"},
    "mcpgw_sandbox_disk_bytes": {"provider"},
    "mcpgw_sandbox_memory_bytes": {"provider"},
    "mcpgw_jobs": {"kind", "status"},
    "mcpgw_audit_queue_depth": set(),
    "mcpgw_audit_rows": {"result"},
    "mcpgw_audit_write_failures": set(),
    "process_cpu_seconds": set(),
    "process_resident_memory_bytes": set(),
}


def _scrape(server: Server) -> dict[str, list[Any]]:
    text = httpx.get(f"{server.url}/metrics", headers=AUTH, timeout=30).text
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _value(samples: dict[str, list[Any]], family: str, sample: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples.get(family, [])
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_every_family_is_exposed_with_its_labels(gateway: Server) -> None:
    assert _modern_call(gateway, "fix__echo", {"text": "x"}).status_code == 200
    samples = _scrape(gateway)
    for family, labels in FAMILIES.items():
        assert family in samples, family
        for sample in samples[family]:
            assert labels <= set(sample.labels), (family, sample)


def test_counters_move_with_calls(gateway: Server) -> None:
    before = _scrape(gateway)
    calls = "mcpgw_tool_calls_total"
    fast = {"server": "fix", "tool": "echo", "route": "direct", "outcome": "ok"}
    assert _modern_call(gateway, "fix__echo", {"text": "x"}).status_code == 200
    assert _modern_call(gateway, "fix__echo", None).status_code == 200  # the SDK path
    viewer = _new_key(gateway, "viewer")
    assert _modern_call(gateway, "fix__echo", {"text": "x"}, key=viewer).status_code == 200
    r = httpx.get(f"{gateway.url}/api/v1/servers/fix", headers=AUTH)
    assert r.status_code == 200
    after = _scrape(gateway)

    def moved(family: str, sample: str, **labels: str) -> float:
        return _value(after, family, sample, **labels) - _value(before, family, sample, **labels)

    assert moved("mcpgw_tool_calls", calls, **fast) == 1
    assert moved("mcpgw_tool_calls", calls, server="fix", route="sdk") == 1
    assert moved("mcpgw_tool_calls", calls, server="fix", route="direct", outcome="denied") == 1
    count = "mcpgw_tool_call_seconds_count"
    assert moved("mcpgw_tool_call_seconds", count, server="fix", tool="echo", route="direct") == 2
    assert moved("mcpgw_calls_refused", "mcpgw_calls_refused_total", reason="call_denied") == 1
    assert moved("mcpgw_tool_result_tokens", "mcpgw_tool_result_tokens_total", server="fix") > 0
    # HTTP requests by route template: the server's name is not a label value.
    http = "mcpgw_http_requests_total"
    template = {"method": "GET", "route": "/api/v1/servers/{name}", "status": "200"}
    assert moved("mcpgw_http_requests", http, **template) == 1
    assert moved("mcpgw_http_requests", http, method="POST", route="/mcp", status="200") == 3
    assert not any("fix" in s.labels.get("route", "") for s in after["mcpgw_http_requests"])
    # The backend's health and its sessions.
    assert (
        _value(
            after, "mcpgw_backend_status", "mcpgw_backend_status", server="fix", status="healthy"
        )
        == 1
    )
    assert (
        _value(
            after, "mcpgw_backend_status", "mcpgw_backend_status", server="fix", status="unhealthy"
        )
        == 0
    )

    # Audit rows are written for the calls, off the request path (a batch at most
    # MCPGW_AUDIT_FLUSH_SECONDS later): the counter moves once the writer has run.
    def written() -> float:
        rows = _scrape(gateway)
        return _value(rows, "mcpgw_audit_rows", "mcpgw_audit_rows_total", result="written")

    deadline = time.monotonic() + 30
    while written() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert written() > 0, "no audit row written within 30 s"


def test_sessions_are_counted_by_era(gateway: Server) -> None:
    headers = {**AUTH, "Accept": "application/json, text/event-stream"}
    before = _value(_scrape(gateway), "mcpgw_mcp_sessions", "mcpgw_mcp_sessions", era="2025-11-25")
    r = httpx.post(f"{gateway.url}/mcp", json=LEGACY_INIT, headers=headers, timeout=30)
    assert r.status_code == 200
    after = _value(_scrape(gateway), "mcpgw_mcp_sessions", "mcpgw_mcp_sessions", era="2025-11-25")
    assert after == before + 1


def test_the_grafana_dashboard_uses_only_exposed_families() -> None:
    """Every expression of docs/grafana/mcp-gateway.json names families `/metrics` has."""
    import json
    import re
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "docs" / "grafana" / "mcp-gateway.json"
    dashboard = json.loads(path.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(dashboard["panels"]) >= 15 and exprs
    known = set(FAMILIES) | {"process_resident_memory_bytes"}
    for expr in exprs:
        for name in re.findall(r"\b((?:mcpgw|process)_[a-z_]+)", expr):
            base = re.sub(r"_(total|bucket|count|sum)$", "", name)
            assert base in known, (name, expr)
