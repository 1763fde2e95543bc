"""Remote backends that require a client certificate (issue 18, mTLS): a real MCP
backend served over HTTPS by uvicorn, requiring certificates signed by a throwaway CA
(`trustme`); the gateway presents the server's sealed certificate, verifies the
backend with the server's private CA, and never shows the key."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from tests.integration.servers.conftest import Gateway, text_of
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[3]


class Backend:
    def __init__(self, tmp_path: Path) -> None:
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1")
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / "backend.pem"))
        cert.private_key_pem.write_to_path(str(tmp_path / "backend.key"))
        self.ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        client = self.ca.issue_cert("gateway@example.com")
        self.client_cert = client.cert_chain_pems[0].bytes().decode()
        self.client_key = client.private_key_pem.bytes().decode()
        self.ca_pem = self.ca.cert_pem.bytes().decode()
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}/mcp"
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "tests.fixtures.http_backend:app",
                "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
                "--ssl-certfile", str(tmp_path / "backend.pem"),
                "--ssl-keyfile", str(tmp_path / "backend.key"),
                "--ssl-ca-certs", str(tmp_path / "ca.pem"),
                "--ssl-cert-reqs", "2",  # ssl.CERT_REQUIRED: no certificate, no connection
            ],
            cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url, verify=False, timeout=1)  # noqa: S501 (readiness only)
            except httpx.ConnectError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.1)
            except httpx.HTTPError:
                return  # the TLS handshake is refused without a certificate: it is up


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    found = Backend(tmp_path)
    yield found
    found.proc.terminate()
    found.proc.wait(10)


async def test_a_backend_that_requires_a_client_certificate(gw: Gateway, backend: Backend) -> None:
    body = {
        "name": "secured",
        "type": "remote",
        "config": {"url": backend.url, "tls_ca": backend.ca_pem},
        "secrets": {"TLS_CLIENT_CERT": backend.client_cert, "TLS_CLIENT_KEY": backend.client_key},
    }
    r = await gw.register(body)
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] == "healthy", r.json()["health"]
    assert backend.client_key not in r.text and "PRIVATE KEY" not in r.text
    for _ in range(3):  # the first call and the pooled (fast path) ones
        result = await gw.execute("secured__echo", {"text": "over mTLS"})
        assert text_of(result) == "over mTLS"
    # Through /mcp: the fast path's own HTTP channel presents the certificate too.
    rpc = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "fast"}},
    }
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    headers = {
        **gw.auth(),
        "Accept": "application/json, text/event-stream",
        "Host": "127.0.0.1:8000",
    }
    opened = await gw.client.post("/mcp/servers/secured", json=init, headers=headers)
    session = {
        **headers,
        "Mcp-Session-Id": opened.headers["mcp-session-id"],
        "MCP-Protocol-Version": "2025-11-25",
    }
    called = await gw.client.post("/mcp/servers/secured", json=rpc, headers=session)
    assert '"fast"' in called.text, called.text
    metrics = (await gw.client.get("/metrics", headers=gw.auth())).text
    calls = [
        line
        for line in metrics.splitlines()
        if line.startswith("mcpgw_tool_calls_total{") and 'server="secured"' in line
    ]
    assert any('route="direct"' in line for line in calls), calls
    shown = await gw.client.get("/api/v1/servers/secured", headers=gw.auth())
    assert "PRIVATE KEY" not in shown.text and shown.json()["secrets"]["TLS_CLIENT_KEY"]


async def test_without_the_certificate_or_with_a_broken_one(gw: Gateway, backend: Backend) -> None:
    plain = {
        "name": "nocert",
        "type": "remote",
        "config": {"url": backend.url, "tls_ca": backend.ca_pem},
    }
    r = await gw.register(plain)
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] != "healthy"
    half = {**plain, "name": "half", "secrets": {"TLS_CLIENT_CERT": backend.client_cert}}
    r = await gw.register(half)
    assert r.status_code == 422 and "TLS_CLIENT_KEY go together" in r.text
    broken = {**plain, "name": "broken", "secrets": {"TLS_CLIENT_CERT": "x", "TLS_CLIENT_KEY": "y"}}
    r = await gw.register(broken)
    assert r.status_code == 422 and "could not be loaded" in r.text
    bad_ca = {"name": "badca", "type": "remote", "config": {"url": backend.url, "tls_ca": "nope"}}
    r = await gw.register(bad_ca)
    assert r.status_code == 422 and "tls_ca" in r.text
