"""One trace from the agent through the gateway to the backend, on every call path.

Real parts: a gateway process, a real MCP backend process that traces itself with the
OpenTelemetry SDK (tests/fixtures/traced_backend.py), real HTTP. The OTLP/HTTP
receiver both export to is a stand-in for an OpenTelemetry Collector (none can be
installed here): it decodes the real protobuf wire format (tests/support_otlp.py).

The agent sends a sampled W3C context (in `params._meta`, or as the `traceparent`
header); the gateway's root ratio is left at its 1% default, so the spans arriving
prove the agent's sampled trace is followed (parent-based sampling).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import BOOT, Server, free_port, spawn_http
from tests.support_mcp import ACCEPT, LEGACY_INIT, last_message, modern_call
from tests.support_otlp import OtlpReceiver, ReceivedSpan

BACKEND = Path(__file__).resolve().parents[2] / "fixtures" / "traced_backend.py"
AUTH = {"Authorization": f"Bearer {BOOT}"}
SERVER_KIND, CLIENT_KIND = 2, 3  # OTLP's SpanKind numbers
LEGACY = "2025-11-25"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.fixture
def backend(receiver: OtlpReceiver) -> Iterator[str]:
    port = free_port()
    proc = spawn_http([sys.executable, str(BACKEND), str(port), f"{receiver.url}/v1/traces"], port)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.kill()
    proc.wait()


@pytest.fixture
def gateway(server_factory: type[Server], backend: str, receiver: OtlpReceiver) -> Server:
    server = _exporting_gateway(server_factory, receiver)
    # The same backend twice: `tb` as it negotiates (2026-07-28), `tb25` pinned to
    # 2025-11-25, which a 2025-11-25 agent's calls reach on the fast path.
    _register(server, "tb", backend)
    _register(server, "tb25", backend, protocol=LEGACY)
    return server


def _exporting_gateway(server_factory: type[Server], receiver: OtlpReceiver, **env: str) -> Server:
    """A gateway that exports to ``receiver`` (``env``: more settings), ready."""
    server = server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_ALLOW_PRIVATE_URLS="true",
        MCPGW_TELEMETRY_EXPORTER="otlp_http",
        MCPGW_TELEMETRY_ENDPOINT=receiver.url,
        **env,
    )
    server.wait_ready()
    return server


def _register(server: Server, name: str, backend: str, **config: str) -> None:
    r = httpx.post(
        f"{server.url}/api/v1/servers",
        params={"wait": True},
        json={"name": name, "type": "remote", "config": {"url": backend, **config}},
        headers=AUTH,
        timeout=60,
    )
    assert r.status_code == 201, r.text


def _agent_context() -> tuple[str, str, str]:
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def _legacy_session(server: Server) -> dict[str, str]:
    """Open a 2025-11-25 session with raw requests; its headers for later requests."""
    headers = {**AUTH, "Accept": ACCEPT, "Content-Type": "application/json"}
    r = httpx.post(f"{server.url}/mcp", json=LEGACY_INIT, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    headers = {**headers, "Mcp-Session-Id": r.headers["mcp-session-id"]}
    headers["MCP-Protocol-Version"] = LEGACY
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert httpx.post(f"{server.url}/mcp", json=note, headers=headers, timeout=30).is_success
    return headers


def _server_of(way: str) -> str:
    return "tb25" if way == "legacy-fast" else "tb"


def _call(server: Server, way: str, tool: str, parent: str) -> httpx.Response:
    """One call of ``{tb or tb25}__{tool}`` the ``way`` given, carrying the agent's
    ``parent``."""
    arguments: dict[str, Any] | None = {"text": "hi"} if tool == "echo" else {}
    if way == "rest":
        return httpx.post(
            f"{server.url}/api/v1/tools/execute",
            json={"tool": f"tb__{tool}", "arguments": arguments},
            headers={**AUTH, "traceparent": parent},
            timeout=30,
        )
    name = f"{_server_of(way)}__{tool}"
    if way.endswith("sdk"):  # EXECUTE_TOOL is always the SDK path's
        name, arguments = "EXECUTE_TOOL", {"tool": name, "arguments": arguments}
    if way.startswith("modern"):
        body, headers = modern_call(name, arguments, key=BOOT)
        body["params"]["_meta"]["traceparent"] = parent
        return httpx.post(f"{server.url}/mcp", json=body, headers=headers, timeout=30)
    headers = _legacy_session(server)
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    # A 2025-11-25 agent here carries its context as the HTTP header.
    return httpx.post(
        f"{server.url}/mcp", json=body, headers={**headers, "traceparent": parent}, timeout=30
    )


def _is_call(span: ReceivedSpan) -> bool:
    """The gateway's MCP server span of a call (a REST call's HTTP span is SERVER too)."""
    return (
        span.service == "mcp-gateway"
        and span.kind == SERVER_KIND
        and span.name.startswith("tools/call ")
    )


def _complete(trace_id: str) -> Any:
    def done(spans: list[ReceivedSpan]) -> bool:
        mine = [s for s in spans if s.trace_id == trace_id]
        return any(s.service == "traced-backend" for s in mine) and any(_is_call(s) for s in mine)

    return done


WAYS = ["modern-fast", "modern-sdk", "legacy-fast", "legacy-sdk", "rest"]


@pytest.mark.parametrize("way", WAYS)
def test_one_trace_spans_agent_gateway_and_backend(
    gateway: Server, receiver: OtlpReceiver, way: str
) -> None:
    trace_id, agent_span, parent = _agent_context()
    r = _call(gateway, way, "echo", parent)
    assert r.status_code == 200, r.text
    # The response names the trace it was served in.
    assert r.headers["traceparent"].split("-")[1] == trace_id
    spans = [s for s in receiver.wait_for(_complete(trace_id)) if s.trace_id == trace_id]
    by_service = {s.service for s in spans}
    assert by_service == {"mcp-gateway", "traced-backend"}, spans
    qualified = f"{_server_of(way)}__echo"
    server = next(s for s in spans if s.name == f"tools/call {qualified}")
    assert server.kind == SERVER_KIND
    if way == "rest":
        # REST: the MCP server span sits under the HTTP request's span (FastAPI's
        # instrumentation), itself under the agent's.
        http = next(s for s in spans if s.span_id == server.parent_span_id)
        assert http.name == "POST /api/v1/tools/execute" and http.kind == SERVER_KIND
        assert http.attributes["http.route"] == "/api/v1/tools/execute"
        assert http.parent_span_id == agent_span
    else:
        assert server.parent_span_id == agent_span  # the agent's span is its parent
    attributes = server.attributes
    assert attributes["mcp.method.name"] == "tools/call"
    assert attributes["gen_ai.tool.name"] == qualified
    assert attributes["mcpgw.server"] == _server_of(way)
    assert attributes["mcpgw.outcome"] == "ok"
    route = attributes["mcpgw.route"]
    expected = {"rest": "rest", "modern-fast": "fast", "legacy-fast": "fast"}
    assert route == expected.get(way, "sdk")
    if way != "rest":
        assert attributes["jsonrpc.request.id"] in ("call-1", "7")
        assert attributes["mcp.protocol.version"] == ("2026-07-28" if "modern" in way else LEGACY)
    if way.startswith("legacy"):
        assert attributes["mcp.session.id"]
    if way.endswith("sdk"):
        assert attributes["mcpgw.via"] == "EXECUTE_TOOL"
    # Pipeline stages as children of the call's span; the backend call as its client span.
    children = {s.name: s for s in spans if s.parent_span_id == server.span_id}
    assert children["authorize"].service == "mcp-gateway"
    client = children["tools/call echo"]
    assert client.kind == CLIENT_KIND
    # The backend's own span hangs under the gateway's client span: via `_meta` …
    backend = next(s for s in spans if s.service == "traced-backend")
    assert backend.parent_span_id == client.span_id
    # … and the same context came as the HTTP header (a remote backend).
    assert backend.attributes["http.traceparent"].split("-")[1:3] == [trace_id, client.span_id]
    # The log line of the request carries the trace id.
    assert f'"trace_id": "{trace_id}"' in gateway.output()


def test_fast_path_and_sdk_path_both_serve_traced_calls(
    gateway: Server, receiver: OtlpReceiver
) -> None:
    routes = set()
    for way in ("modern-fast", "modern-sdk"):
        trace_id, _, parent = _agent_context()
        assert _call(gateway, way, "echo", parent).status_code == 200
        spans = receiver.wait_for(_complete(trace_id))
        routes |= {
            s.attributes["mcpgw.route"] for s in spans if s.trace_id == trace_id and _is_call(s)
        }
    assert routes == {"fast", "sdk"}


@pytest.mark.parametrize("way", ["modern-fast", "modern-sdk", "rest"])
def test_a_tool_error_marks_the_span_an_error(
    gateway: Server, receiver: OtlpReceiver, way: str
) -> None:
    trace_id, _, parent = _agent_context()
    assert _call(gateway, way, "fail", parent).status_code == 200
    spans = receiver.wait_for(_complete(trace_id))
    server = next(s for s in spans if s.trace_id == trace_id and _is_call(s))
    assert server.status_code == 2  # ERROR
    assert server.attributes["error.type"] == "tool_error"


def test_the_audit_row_carries_the_trace_id(gateway: Server, receiver: OtlpReceiver) -> None:
    trace_id, _, parent = _agent_context()
    r = _call(gateway, "modern-fast", "echo", parent)
    assert r.status_code == 200
    found: list[Any] = []
    for _ in range(100):
        rows = httpx.get(
            f"{gateway.url}/api/v1/audit", params={"action": "tools/call"}, headers=AUTH
        ).json()["items"]
        found = [row for row in rows if row["trace_id"] == trace_id]
        if found:
            break
        subprocess.run(["sleep", "0.1"], check=True)
    assert len(found) == 1 and found[0]["target"] == "echo"


def test_untraced_agents_start_traces_at_the_ratio(gateway: Server, receiver: OtlpReceiver) -> None:
    """Without an agent context, calls start their own traces (1% recorded), and the
    response still names the trace the backend joined."""
    body, headers = modern_call("tb__echo", {"text": "x"}, key=BOOT)
    r = httpx.post(f"{gateway.url}/mcp", json=body, headers=headers, timeout=30)
    assert r.status_code == 200
    version, trace_id, _span, _flags = r.headers["traceparent"].split("-")
    assert version == "00" and len(trace_id) == 32 and int(trace_id, 16) != 0


def test_call_durations_carry_the_trace_as_exemplar(
    gateway: Server, receiver: OtlpReceiver
) -> None:
    trace_id, _, parent = _agent_context()
    assert _call(gateway, "modern-fast", "echo", parent).status_code == 200
    r = httpx.get(
        f"{gateway.url}/metrics",
        headers={**AUTH, "Accept": "application/openmetrics-text; version=1.0.0"},
        timeout=30,
    )
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    buckets = [
        line
        for line in r.text.splitlines()
        if line.startswith("mcpgw_tool_call_seconds_bucket") and 'server="tb"' in line
    ]
    assert any(f'# {{trace_id="{trace_id}"}}' in line for line in buckets), buckets


GENERATED = '''
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("gen")


@server.tool()
def where(ctx: Context) -> str:
    """The W3C context this request carried in its _meta."""
    meta = ctx.request_context.meta or {}
    if not isinstance(meta, dict):
        meta = dict(getattr(meta, "model_extra", None) or {})
    return str(meta.get("traceparent", ""))
'''


@pytest.mark.parametrize("protocol", ["2026-07-28", "2025-11-25"])
def test_an_in_process_backend_gets_the_context_in_meta(
    gateway: Server, receiver: OtlpReceiver, protocol: str
) -> None:
    """Not only HTTP backends: an in-process (generated) server, in either era, gets
    the gateway's client span as the parent in its requests' `_meta`."""
    config: dict[str, Any] = {"source": GENERATED}
    if protocol == "2025-11-25":
        config["protocol"] = protocol
    r = httpx.post(
        f"{gateway.url}/api/v1/servers",
        params={"wait": True},
        json={"name": "gen", "type": "generated", "config": config},
        headers=AUTH,
        timeout=60,
    )
    assert r.status_code == 201, r.text
    trace_id, _, parent = _agent_context()
    r = httpx.post(
        f"{gateway.url}/api/v1/tools/execute",
        json={"tool": "gen__where", "arguments": {}},
        headers={**AUTH, "traceparent": parent},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    received = r.json()["content"][0]["text"]
    _, got_trace, got_parent, flags = received.split("-")
    assert (got_trace, flags) == (trace_id, "01")
    spans = receiver.wait_for(
        lambda s: any(x.trace_id == trace_id and x.name == "tools/call where" for x in s)
    )
    client = next(s for s in spans if s.trace_id == trace_id and s.name == "tools/call where")
    assert client.kind == CLIENT_KIND and got_parent == client.span_id


def test_reads_prompts_and_sandbox_work_get_spans_in_the_agents_trace(
    gateway: Server, receiver: OtlpReceiver
) -> None:
    """Work the call pipeline does not trace gets spans too (tracing.operation): a
    resource read and a prompt through /mcp (the SDK's session path), a sandbox's
    create and exec through REST, each under the agent's traceparent."""
    headers = _legacy_session(gateway)

    def rpc(method: str, params: dict[str, Any], parent: str) -> Any:
        body = {"jsonrpc": "2.0", "id": 9, "method": method, "params": params}
        r = httpx.post(
            f"{gateway.url}/mcp", json=body, headers={**headers, "traceparent": parent}, timeout=30
        )
        assert r.status_code == 200, r.text
        return last_message(r)["result"]

    _, _, untraced = _agent_context()
    uri = next(
        r["uri"] for r in rpc("resources/list", {}, untraced)["resources"] if "hello" in r["uri"]
    )
    prompt = next(
        p["name"] for p in rpc("prompts/list", {}, untraced)["prompts"] if "greet" in p["name"]
    )
    expected: dict[str, tuple[str, str]] = {}
    trace_id, agent_span, parent = _agent_context()
    assert rpc("resources/read", {"uri": uri}, parent)["contents"][0]["text"] == "hello"
    expected[trace_id] = (f"resources/read {uri}", agent_span)
    trace_id, agent_span, parent = _agent_context()
    assert rpc("prompts/get", {"name": prompt, "arguments": {"name": "Ann"}}, parent)
    expected[trace_id] = (f"prompts/get {prompt}", agent_span)
    trace_id, agent_span, parent = _agent_context()
    traced = {**AUTH, "traceparent": parent}
    r = httpx.post(f"{gateway.url}/api/v1/sandboxes", json={}, headers=traced, timeout=60)
    assert r.status_code == 201, r.text
    box = r.json()["id"]
    r = httpx.post(
        f"{gateway.url}/api/v1/sandboxes/{box}/exec",
        json={"command": "echo hi"},
        headers=traced,
        timeout=60,
    )
    assert r.status_code == 200, r.text

    def arrived(spans: list[ReceivedSpan]) -> bool:
        names = {(s.trace_id, s.name) for s in spans}
        return (
            all((t, name) in names for t, (name, _) in expected.items())
            and {
                (trace_id, "sandbox.create"),
                (trace_id, "sandbox.exec"),
            }
            <= names
        )

    spans = receiver.wait_for(arrived)
    for t, (name, agent) in expected.items():
        span = next(s for s in spans if s.trace_id == t and s.name == name)
        assert span.parent_span_id == agent and span.kind == SERVER_KIND
        assert span.attributes["mcp.method.name"] == name.split()[0]
        assert span.attributes["mcp.session.id"] == headers["Mcp-Session-Id"]
    sandbox = [s for s in spans if s.trace_id == trace_id and s.name.startswith("sandbox.")]
    # Each under its REST request's span (FastAPI's instrumentation), under the agent's.
    spans = receiver.wait_for(
        lambda got: sum(s.trace_id == trace_id and s.kind == SERVER_KIND for s in got) == 2
    )
    by_id = {s.span_id: s for s in spans if s.trace_id == trace_id}
    requests = {s.name: by_id[s.parent_span_id] for s in sandbox}
    assert requests["sandbox.create"].name == "POST /api/v1/sandboxes"
    assert requests["sandbox.exec"].name == "POST /api/v1/sandboxes/{sandbox_id}/exec"
    assert {r.parent_span_id for r in requests.values()} == {agent_span}
    exec_span = next(s for s in sandbox if s.name == "sandbox.exec")
    assert exec_span.attributes["mcpgw.sandbox.id"] == box
    assert exec_span.attributes["process.exit.code"] == 0


def test_log_lines_go_out_as_otlp_logs_with_the_calls_trace(
    server_factory: type[Server], backend: str, receiver: OtlpReceiver
) -> None:
    """MCPGW_TELEMETRY_EXPORT_LOGS: the access line of a traced call arrives at the
    receiver's /v1/logs with the call's trace id; nothing of the exporter's own."""
    server = _exporting_gateway(server_factory, receiver, MCPGW_TELEMETRY_EXPORT_LOGS="true")
    _register(server, "tb", backend)
    trace_id, _, parent = _agent_context()
    assert _call(server, "modern-fast", "echo", parent).status_code == 200

    def arrived(logs: list[Any]) -> bool:
        return any(log.trace_id == trace_id and log.body == "request" for log in logs)

    logs = receiver.wait_for_logs(arrived)
    line = next(log for log in logs if log.trace_id == trace_id and log.body == "request")
    assert line.service == "mcp-gateway" and line.severity == "INFO"
    assert line.attributes["path"] == "/mcp" and line.attributes["status"] == 200
    assert not any(
        log.attributes.get("code.namespace", "").startswith("opentelemetry") for log in logs
    )


def test_metrics_are_pushed_as_otlp_metrics(
    server_factory: type[Server], backend: str, receiver: OtlpReceiver
) -> None:
    """MCPGW_TELEMETRY_EXPORT_METRICS: the families /metrics shows arrive at the
    receiver's /v1/metrics: counters as monotonic sums, histograms, gauges."""
    server = _exporting_gateway(
        server_factory,
        receiver,
        MCPGW_TELEMETRY_EXPORT_METRICS="true",
        MCPGW_TELEMETRY_METRICS_INTERVAL_SECONDS="1",
    )
    _register(server, "tb", backend)
    _, _, parent = _agent_context()
    assert _call(server, "modern-fast", "echo", parent).status_code == 200
    echo = {"server": "tb", "tool": "echo", "route": "direct"}

    def called(metric: Any) -> bool:
        return any(echo.items() <= labels.items() and n >= 1 for labels, n in metric.points)

    def arrived(metrics: list[Any]) -> bool:
        names = {m.name for m in metrics if called(m) or m.kind == "gauge"}
        return {"mcpgw_tool_calls", "mcpgw_tool_call_seconds"} <= names

    metrics = receiver.wait_for_metrics(arrived)
    kinds = {m.name: (m.kind, m.monotonic) for m in metrics if m.service == "mcp-gateway"}
    assert kinds["mcpgw_tool_calls"] == ("sum", True)
    assert kinds["mcpgw_tool_call_seconds"][0] == "histogram"
    assert kinds["process_resident_memory_bytes"][0] == "gauge"
    assert any(m.name == "mcpgw_tool_calls" and called(m) for m in metrics)
