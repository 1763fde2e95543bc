"""Replacing the exporter at run time (`PUT /api/v1/settings/telemetry`), refusing bad
configurations, keeping credentials sealed, and `mcpgw telemetry test`.

A real gateway process and a real backend process (tests/fixtures/http_backend.py,
whose `sleep` tool keeps calls in flight across the switch). The two OTLP/HTTP
receivers stand in for OpenTelemetry Collectors (none can be installed here); they
decode the real protobuf wire format (tests/support_otlp.py).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support import BOOT, Server, free_port, run, spawn_http
from tests.support_mcp import modern_call
from tests.support_otlp import OtlpReceiver, ReceivedSpan

BACKEND = Path(__file__).resolve().parents[2] / "fixtures" / "http_backend.py"
AUTH = {"Authorization": f"Bearer {BOOT}"}
SETTINGS = "/api/v1/settings/telemetry"
INGEST_KEY = "hcaik-0123456789abcdef-telemetry"


@pytest.fixture
def receivers() -> Iterator[tuple[OtlpReceiver, OtlpReceiver]]:
    with OtlpReceiver() as a, OtlpReceiver() as b:
        yield a, b


@pytest.fixture
def gateway(
    server_factory: type[Server], receivers: tuple[OtlpReceiver, OtlpReceiver]
) -> Iterator[Server]:
    port = free_port()
    backend = spawn_http([sys.executable, str(BACKEND), str(port)], port)
    server = server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_ALLOW_PRIVATE_URLS="true",
        MCPGW_TELEMETRY_EXPORTER="otlp_http",
        MCPGW_TELEMETRY_ENDPOINT=receivers[0].url,
        MCPGW_TELEMETRY_SAMPLE_RATIO="1.0",
    )
    server.wait_ready()
    r = httpx.post(
        f"{server.url}/api/v1/servers",
        params={"wait": True},
        json={"name": "fix", "type": "remote", "config": {"url": f"http://127.0.0.1:{port}/mcp"}},
        headers=AUTH,
        timeout=60,
    )
    assert r.status_code == 201, r.text
    yield server
    backend.kill()
    backend.wait()


def _sleep_call(server: Server, seconds: float) -> str:
    """A traced fast-path call that takes ``seconds``; its trace id."""
    trace_id = os.urandom(16).hex()
    body, headers = modern_call("fix__sleep", {"seconds": seconds}, key=BOOT)
    body["params"]["_meta"]["traceparent"] = f"00-{trace_id}-{os.urandom(8).hex()}-01"
    r = httpx.post(f"{server.url}/mcp", json=body, headers=headers, timeout=30)
    assert r.status_code == 200 and r.json()["result"]["isError"] is False, r.text
    return trace_id


def _call_spans(spans: list[ReceivedSpan]) -> dict[str, int]:
    """Gateway call spans per trace id."""
    found: dict[str, int] = {}
    for span in spans:
        if span.name == "tools/call fix__sleep":
            found[span.trace_id] = found.get(span.trace_id, 0) + 1
    return found


def test_switching_receivers_at_run_time_loses_no_span(
    gateway: Server, receivers: tuple[OtlpReceiver, OtlpReceiver]
) -> None:
    a, b = receivers
    with ThreadPoolExecutor(8) as pool:
        before = [pool.submit(_sleep_call, gateway, 0.0) for _ in range(4)]
        in_flight = [pool.submit(_sleep_call, gateway, 1.5) for _ in range(4)]
        [f.result() for f in before]
        # Switch while the slow calls are in flight (their spans began under A).
        r = httpx.put(
            f"{gateway.url}{SETTINGS}",
            json={"exporter": "otlp_http", "endpoint": b.url, "sample_ratio": 1.0},
            headers=AUTH,
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert r.json()["endpoint"] == b.url and r.json()["source"] == "settings"
        after = [pool.submit(_sleep_call, gateway, 0.0) for _ in range(4)]
        old = {f.result() for f in before} | {f.result() for f in in_flight}
        new = {f.result() for f in after}
    at_a = _call_spans(a.wait_for(lambda s: set(_call_spans(s)) >= old))
    at_b = _call_spans(b.wait_for(lambda s: set(_call_spans(s)) >= new))
    # Every call's span arrived exactly once, where its call began.
    assert at_a == dict.fromkeys(old, 1)
    assert at_b == dict.fromkeys(new, 1)


def test_a_bad_configuration_is_refused_naming_the_field(gateway: Server) -> None:
    cases = [
        ({"exporter": "otlp_http", "preset": "honeycomb"}, "api_key"),
        ({"exporter": "otlp_http", "endpoint": "not a url"}, "endpoint"),
        ({"exporter": "otlp_http", "endpoint": "http://x:4318", "sample_ratio": 2}, "sample_ratio"),
        ({"exporter": "zipkin"}, "exporter"),
        ({"exporter": "otlp_grpc", "preset": "splunk", "api_key": "k" * 20}, "region"),
    ]
    for body, field in cases:
        r = httpx.put(f"{gateway.url}{SETTINGS}", json=body, headers=AUTH, timeout=30)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["code"] == "validation_error"
        assert field in [e["field"] for e in r.json()["errors"]], (body, r.json())
    # Nothing changed: still on the environment's exporter.
    assert httpx.get(f"{gateway.url}{SETTINGS}", headers=AUTH).json()["source"] == "environment"


def test_credentials_are_sealed_and_never_returned(gateway: Server, tmp_path: Path) -> None:
    body = {
        "exporter": "otlp_http",
        "preset": "honeycomb",
        "api_key": INGEST_KEY,
        "headers": {"x-extra": "also-secret-value"},
    }
    r = httpx.put(f"{gateway.url}{SETTINGS}", json=body, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    shown = httpx.get(f"{gateway.url}{SETTINGS}", headers=AUTH).json()
    assert shown["api_key_set"] is True and shown["header_names"] == ["x-extra"]
    assert shown["endpoint"] is None and shown["preset"] == "honeycomb"
    assert INGEST_KEY not in r.text + str(shown) and "also-secret-value" not in str(shown)
    # Stored sealed: the database file holds neither value in the clear.
    database = next((tmp_path / "data").rglob("*.db"))
    with sqlite3.connect(database) as db:
        (value, sealed) = db.execute("SELECT value, secrets_sealed FROM settings").fetchone()
    assert sealed and INGEST_KEY not in sealed + value and "also-secret" not in sealed + value
    # A change that leaves the key out keeps it (it cannot be read back to resend).
    r = httpx.put(
        f"{gateway.url}{SETTINGS}",
        json={"exporter": "otlp_http", "preset": "honeycomb", "sample_ratio": 0.5},
        headers=AUTH,
    )
    assert r.status_code == 200 and r.json()["api_key_set"] is True
    # Not a reader's business.
    audit = httpx.get(f"{gateway.url}/api/v1/audit", params={"action": "settings.telemetry"})
    assert audit.status_code == 401
    assert INGEST_KEY not in gateway.output()


def test_mcpgw_telemetry_test_reports_delivery(
    gateway: Server, receivers: tuple[OtlpReceiver, OtlpReceiver], tmp_path: Path
) -> None:
    a, _ = receivers
    env = {"MCPGW_URL": gateway.url, "MCPGW_API_KEY": BOOT}
    done = run(tmp_path, "telemetry", "test", **env)
    assert done.returncode == 0, done.stderr
    assert "delivered" in done.stdout
    assert a.wait_for(lambda s: any(x.name == "mcpgw telemetry test" for x in s))
    # Pointed at nothing listening: reported, exit 1.
    dead = f"http://127.0.0.1:{free_port()}"
    r = httpx.put(
        f"{gateway.url}{SETTINGS}", json={"exporter": "otlp_http", "endpoint": dead}, headers=AUTH
    )
    assert r.status_code == 200
    done = run(tmp_path, "telemetry", "test", **env)
    assert done.returncode == 1 and "could not deliver" in done.stdout


def test_a_call_the_fast_path_hands_to_the_sdk_path_has_one_span(
    gateway: Server, receivers: tuple[OtlpReceiver, OtlpReceiver]
) -> None:
    """The backend forgot its session: the fast path sends nothing and hands the call
    to the SDK path, which reconnects and serves it. One call, one span (the SDK
    path's), and the response names that span."""
    a, _ = receivers
    body, headers = modern_call("fix__forget", {}, key=BOOT)
    assert httpx.post(f"{gateway.url}/mcp", json=body, headers=headers, timeout=30).is_success
    trace_id = os.urandom(16).hex()
    body, headers = modern_call("fix__echo", {"text": "again"}, key=BOOT)
    body["params"]["_meta"]["traceparent"] = f"00-{trace_id}-{os.urandom(8).hex()}-01"
    r = httpx.post(f"{gateway.url}/mcp", json=body, headers=headers, timeout=30)
    assert r.status_code == 200 and "mcpgw-route" not in r.headers  # the SDK path's answer
    # The call's span, not merely the first of its trace: the reconnection's spans
    # (backend.connect, SQL) end earlier and may go out in a batch of their own.
    spans = a.wait_for(
        lambda s: any(x.trace_id == trace_id and x.name == "tools/call fix__echo" for x in s)
    )
    calls = [s for s in spans if s.trace_id == trace_id and s.name == "tools/call fix__echo"]
    assert [s.attributes["mcpgw.route"] for s in calls] == ["sdk"]
    assert r.headers["traceparent"].split("-")[2] == calls[0].span_id


def test_other_audited_requests_carry_the_agents_trace_id(gateway: Server) -> None:
    trace_id = os.urandom(16).hex()
    r = httpx.put(
        f"{gateway.url}{SETTINGS}",
        json={"exporter": "otlp_http", "endpoint": "http://127.0.0.1:4318", "sample_ratio": 1},
        headers={**AUTH, "traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01"},
        timeout=30,
    )
    assert r.status_code == 200 and r.headers["traceparent"].split("-")[1] == trace_id
    rows: list[dict[str, str]] = []
    for _ in range(100):
        rows = httpx.get(
            f"{gateway.url}/api/v1/audit", params={"action": "settings.telemetry"}, headers=AUTH
        ).json()["items"]
        if rows:
            break
        time.sleep(0.1)
    assert [row["trace_id"] for row in rows] == [trace_id]
