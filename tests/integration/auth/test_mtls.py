"""The gateway terminating TLS itself, with client certificates that sign agents in
(issue 18, mTLS): a real `mcpgw serve` over HTTPS (uvicorn's TLS), certificates from a
throwaway CA (`trustme`), real TLS handshakes with httpx."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import httpx
import pytest
import trustme

from tests.support import BOOT, Server


class Pki:
    """A CA, the gateway's certificate and two agents' client certificates."""

    def __init__(self, where: Path) -> None:
        self.ca = trustme.CA()
        self.dir = where
        self.ca.cert_pem.write_to_path(str(where / "ca.pem"))
        server = self.ca.issue_cert("127.0.0.1")
        server.cert_chain_pems[0].write_to_path(str(where / "server.pem"))
        server.private_key_pem.write_to_path(str(where / "server.key"))
        for name in ("alice@example.com", "mallory@example.com"):
            cert = self.ca.issue_cert(name)
            cert.private_key_and_cert_chain_pem.write_to_path(str(where / f"{name}.pem"))
        stranger = trustme.CA().issue_cert("alice@example.com")  # not our CA
        stranger.private_key_and_cert_chain_pem.write_to_path(str(where / "stranger.pem"))

    def client(self, who: str | None) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.dir / "ca.pem"))
        if who is not None:
            context.load_cert_chain(str(self.dir / f"{who}.pem"))
        return httpx.Client(verify=context, timeout=10)


def start(server_factory: type[Server], pki: Pki, mode: str) -> str:
    server = server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_TLS_CERT_FILE=str(pki.dir / "server.pem"),
        MCPGW_TLS_KEY_FILE=str(pki.dir / "server.key"),
        MCPGW_TLS_CLIENT_CA_FILE=str(pki.dir / "ca.pem"),
        MCPGW_TLS_CLIENT_AUTH=mode,
    )
    url = f"https://127.0.0.1:{server.port}"
    deadline = time.monotonic() + 30
    with pki.client("alice@example.com") as http:
        while True:
            assert server.proc.poll() is None, server.output()
            try:
                if http.get(f"{url}/readyz").status_code == 200:
                    return url
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def test_a_client_certificate_signs_its_user_in(server_factory: type[Server], pki: Pki) -> None:
    url = start(server_factory, pki, "optional")
    admin = {"Authorization": f"Bearer {BOOT}"}
    with pki.client(None) as http:
        created = http.post(
            f"{url}/api/v1/users",
            json={"email": "alice@example.com", "role": "developer"},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        # No certificate, no token: 401; a token alone still works (optional mode).
        assert http.get(f"{url}/api/v1/me").status_code == 401
        assert http.get(f"{url}/api/v1/me", headers=admin).status_code == 200
    with pki.client("alice@example.com") as http:
        me = http.get(f"{url}/api/v1/me")
        assert me.status_code == 200, me.text
        assert me.json()["user"]["email"] == "alice@example.com"
        # MCP too, with nothing but the certificate.
        r = http.post(
            f"{url}/mcp",
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "mtls-agent", "version": "1"},
                },
            },
            headers={"Accept": "application/json, text/event-stream"},
        )
        assert r.status_code == 200, r.text
        # A bearer token, when sent, is what counts.
        as_admin = http.get(f"{url}/api/v1/me", headers=admin)
        assert as_admin.json()["user"]["role"] == "admin"
    with pki.client("mallory@example.com") as http:  # our CA, but no such user
        refused = http.get(f"{url}/api/v1/me")
        assert refused.status_code == 401 and refused.json()["code"] == "unknown_user"


def test_certificates_from_another_ca_and_required_mode(
    server_factory: type[Server], pki: Pki
) -> None:
    url = start(server_factory, pki, "required")
    with pki.client("stranger") as http, pytest.raises(httpx.HTTPError):
        http.get(f"{url}/readyz")  # the handshake fails: not signed by the client CA
    with pki.client(None) as http, pytest.raises(httpx.HTTPError):
        http.get(f"{url}/readyz")  # required: no TLS connection without a certificate
