"""Spans beyond the tool call: a job on the Celery worker in the trace of the request
that created it, a backend's connection and reconnection, a skill's load, and the
instrumentation packages' spans (REST request, SQL) under the agent's context.

Real parts: `mcpgw serve` processes on SQLite with the Celery worker `serve` starts
itself and its embedded broker; a real stdio MCP server process that is killed; real
OTLP/HTTP export. The receiver is a stand-in for an OpenTelemetry Collector (none can
be installed here): it decodes the real protobuf wire format (tests/support_otlp.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.observability.exporters import TelemetryConfig
from gateway.observability.telemetry import start_telemetry
from gateway.observability.tracing import Telemetry, detached
from gateway.servers.runtimes.base import RuntimeContext, ServerSpec
from gateway.servers.runtimes.connection import McpConnection
from gateway.servers.runtimes.stdio import stdio_target
from tests.support import BOOT, Server, wait_for
from tests.support_otlp import OtlpReceiver, ReceivedSpan

AUTH = {"Authorization": f"Bearer {BOOT}"}
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SERVER_KIND, CLIENT_KIND, PRODUCER_KIND, CONSUMER_KIND = 2, 3, 4, 5  # OTLP's numbers


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def gateway(module_server_factory: type[Server], receiver: OtlpReceiver) -> Server:
    # The embedded worker inherits this environment: it exports where the gateway does.
    server = module_server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_TELEMETRY_EXPORTER="otlp_http",
        MCPGW_TELEMETRY_ENDPOINT=receiver.url,
    )
    server.wait_ready()
    return server


def _agent() -> tuple[str, str, dict[str, str]]:
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    return trace_id, span_id, {**AUTH, "traceparent": f"00-{trace_id}-{span_id}-01"}


def _one(spans: list[ReceivedSpan], name: str, **attributes: Any) -> ReceivedSpan:
    found = [
        s
        for s in spans
        if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, (name, attributes, [(s.name, s.attributes) for s in spans])
    return found[0]


def _is_sql(span: ReceivedSpan) -> bool:
    return "db.system" in span.attributes or "db.system.name" in span.attributes


def test_a_job_continues_the_trace_of_the_request_that_created_it(
    gateway: Server, receiver: OtlpReceiver
) -> None:
    """REST request → `job.submit` (PRODUCER) → the worker's `job.run` (CONSUMER, its
    context carried in the Celery task's headers) → its steps; a retried attempt (the
    `sleep` kind's `flaky`) continues the same trace from the attempt before."""
    trace_id, agent_span, headers = _agent()
    r = httpx.post(
        f"{gateway.url}/api/v1/jobs",
        json={"kind": "sleep", "input": {"seconds": 0.2, "steps": 2, "flaky": 1}},
        headers=headers,
        timeout=30,
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    def attempts_ran(spans: list[ReceivedSpan]) -> bool:
        runs = [s for s in spans if s.trace_id == trace_id and s.name == "job.run"]
        return len(runs) == 2 and sum(s.name == "job.execute" for s in spans) >= 2

    spans = [s for s in receiver.wait_for(attempts_ran, timeout=60) if s.trace_id == trace_id]
    request = _one(spans, "POST /api/v1/jobs")
    assert request.kind == SERVER_KIND and request.parent_span_id == agent_span
    submit = _one(spans, "job.submit")
    assert submit.kind == PRODUCER_KIND and submit.parent_span_id == request.span_id
    assert submit.attributes["mcpgw.job.id"] == job_id
    assert submit.attributes["mcpgw.job.kind"] == "sleep"
    first = _one(spans, "job.run", **{"mcpgw.job.attempt": 1})
    assert first.kind == CONSUMER_KIND and first.parent_span_id == submit.span_id
    assert first.attributes["mcpgw.job.id"] == job_id
    assert first.attributes["mcpgw.job.outcome"] == "retrying"
    steps = {s.name: s for s in spans if s.parent_span_id == first.span_id}
    assert {"job.claim", "job.execute"} <= set(steps)
    assert steps["job.execute"].attributes["mcpgw.job.kind"] == "sleep"
    # The worker's SQL (the claim's reads and writes) under the claim step.
    assert any(_is_sql(s) and s.parent_span_id == steps["job.claim"].span_id for s in spans)
    # The retry was queued from inside the first attempt: the second continues there.
    second = _one(spans, "job.run", **{"mcpgw.job.attempt": 2})
    assert second.parent_span_id == steps["job.execute"].span_id
    assert second.attributes["mcpgw.job.outcome"] == "succeeded"
    assert {s.service for s in spans} == {"mcp-gateway"}


def test_an_attempt_the_reaper_requeues_stays_in_the_jobs_trace(
    server_factory: type[Server], receiver: OtlpReceiver
) -> None:
    """The worker is killed mid-job; the reaper (which runs in no trace) queues the next
    attempt with the context stored with the job: it is still the request's trace."""
    server = server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_TELEMETRY_EXPORTER="otlp_http",
        MCPGW_TELEMETRY_ENDPOINT=receiver.url,
        MCPGW_JOBS_HEARTBEAT_SECONDS="0.2",
        MCPGW_JOBS_STALE_SECONDS="1",
        MCPGW_JOBS_REAPER_INTERVAL_SECONDS="0.3",
    )
    server.wait_ready()
    trace_id, _agent_span, headers = _agent()
    r = httpx.post(
        f"{server.url}/api/v1/jobs",
        json={"kind": "sleep", "input": {"seconds": 3, "steps": 30}},
        headers=headers,
        timeout=30,
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    async def job(*wanted: str) -> dict[str, Any] | None:
        got = httpx.get(f"{server.url}/api/v1/jobs/{job_id}", headers=AUTH, timeout=30).json()
        return got if got["status"] in wanted else None

    running = asyncio.run(wait_for(lambda: job("running"), what="the job to run"))
    os.killpg(os.getpgid(int(running["worker"].rsplit(":", 1)[1])), signal.SIGKILL)
    done = asyncio.run(wait_for(lambda: job("succeeded", "failed"), timeout=60, what="the end"))
    assert done["status"] == "succeeded" and done["attempt"] == 2, done

    def second_ran(spans: list[ReceivedSpan]) -> bool:
        return any(
            s.name == "job.run" and s.attributes.get("mcpgw.job.attempt") == 2
            and s.attributes.get("mcpgw.job.id") == job_id
            for s in spans
        )  # fmt: skip

    spans = receiver.wait_for(second_ran, timeout=30)
    second = _one(spans, "job.run", **{"mcpgw.job.id": job_id, "mcpgw.job.attempt": 2})
    assert second.trace_id == trace_id
    # Under the request that created the job (the stored context), not a new root.
    requests = [s for s in spans if s.trace_id == trace_id and s.name == "POST /api/v1/jobs"]
    assert [second.parent_span_id] == [s.span_id for s in requests]


def test_a_job_without_a_traced_request_is_its_own_trace(
    gateway: Server, receiver: OtlpReceiver
) -> None:
    """No traceparent, root ratio 1%: the request's span decides (parent-based); when
    unsampled, the job's spans are not recorded either, whatever the worker's ratio."""
    r = httpx.post(
        f"{gateway.url}/api/v1/jobs",
        json={"kind": "echo", "input": {"value": "quiet"}},
        headers=AUTH,
        timeout=30,
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    trace_id = r.headers["traceparent"].split("-")[1]

    async def finished() -> bool:
        got = httpx.get(f"{gateway.url}/api/v1/jobs/{job_id}", headers=AUTH, timeout=30)
        return bool(got.json()["status"] == "succeeded")

    asyncio.run(wait_for(finished, timeout=30))
    spans = receiver.wait_for(lambda s: False, timeout=2.5)  # a batch interval and more
    mine = [s for s in spans if s.attributes.get("mcpgw.job.id") == job_id]
    # 1% of requests start a recorded trace: then the job's spans are in it.
    assert not mine or {s.trace_id for s in mine} == {trace_id}


def test_a_skill_load_and_its_sql_have_spans_under_the_request(
    gateway: Server, receiver: OtlpReceiver
) -> None:
    skill = (FIXTURES / "skills" / "valid" / "hello-world" / "SKILL.md").read_bytes()
    r = httpx.post(
        f"{gateway.url}/api/v1/skills/upload",
        files={"file": ("hello-world.md", skill)},
        headers=AUTH,
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text
    trace_id, agent_span, headers = _agent()
    r = httpx.get(
        f"{gateway.url}/api/v1/skills/hello-world/files/SKILL.md", headers=headers, timeout=30
    )
    assert r.status_code == 200 and r.content == skill
    assert r.headers["traceparent"].split("-")[1] == trace_id

    def loaded(spans: list[ReceivedSpan]) -> bool:
        return any(s.trace_id == trace_id and s.name == "skills.load" for s in spans)

    spans = [s for s in receiver.wait_for(loaded) if s.trace_id == trace_id]
    request = _one(spans, "GET /api/v1/skills/{name}/files/{path:path}")
    assert request.parent_span_id == agent_span
    assert r.headers["traceparent"].split("-")[2] == request.span_id
    load = _one(spans, "skills.load")
    assert load.parent_span_id == request.span_id
    assert load.attributes["mcpgw.skill.name"] == "hello-world"
    assert load.attributes["mcpgw.skill.file"] == "SKILL.md"
    assert load.attributes["mcpgw.skill.bytes"] == len(skill)
    spans = [s for s in receiver.wait_for(lambda got: False, timeout=1.5) if s.trace_id == trace_id]
    assert any(_is_sql(s) and s.parent_span_id == load.span_id for s in spans)


def _pids_with(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"TEST_MARKER={marker}".encode() in environ:
            pids.append(int(entry.name))
    return pids


async def test_a_backend_connection_and_its_reconnection_have_spans(tmp_path: Path) -> None:
    """The first connection is a child of the work that needed it; after the backend
    process is killed, the reconnection is a trace of its own (root ratio 100% here)."""
    server = str(FIXTURES / "stdlib_mcp_server.py")

    class ScriptConnector:
        async def targets(self, spec: ServerSpec, ctx: RuntimeContext) -> list[Any]:
            return [stdio_target(ctx, spec, sys.executable, [server])]

    async def nothing(*_: Any, **__: Any) -> None:
        return None

    marker = uuid.uuid4().hex
    with OtlpReceiver() as receiver:
        telemetry = Telemetry()
        config = TelemetryConfig(exporter="otlp_http", endpoint=receiver.url, sample_ratio=1.0)
        start_telemetry(telemetry, config)
        ctx = RuntimeContext(
            data_dir=tmp_path,
            connect_timeout=20,
            allow_private_urls=True,
            inherit_env=(),
            on_list_changed=nothing,
            on_health_changed=nothing,
            isolation="none",
            telemetry=telemetry,
        )
        spec = ServerSpec(id="s", name="script", type="npx", config={}, env={"TEST_MARKER": marker})
        connection = McpConnection(spec, ScriptConnector(), ctx)
        try:
            with detached(telemetry, "test.work") as work:
                assert work is not None
                await connection.start()
                work_ids = (work.get_span_context().trace_id, work.get_span_context().span_id)
            pids = _pids_with(marker)
            assert pids
            for pid in pids:
                os.kill(pid, signal.SIGKILL)

            async def back() -> bool:
                return connection.health.restarts >= 1 and connection.running

            await wait_for(back, timeout=30)
        finally:
            await connection.stop(final=True)
            telemetry.shutdown()
        spans = receiver.wait_for(
            lambda got: sum(s.name == "backend.connect" for s in got) >= 2, timeout=10
        )
    connects = [s for s in spans if s.name == "backend.connect"]
    first = _one(connects, "backend.connect", **{"mcpgw.backend.reconnect": False})
    assert (first.trace_id, first.parent_span_id) == (f"{work_ids[0]:032x}", f"{work_ids[1]:016x}")
    assert first.kind == CLIENT_KIND
    assert first.attributes["mcpgw.server"] == "script"
    assert first.attributes["mcp.protocol.version"] == "2025-11-25"
    again = _one(connects, "backend.connect", **{"mcpgw.backend.reconnect": True})
    assert again.parent_span_id == "" and again.trace_id != first.trace_id
