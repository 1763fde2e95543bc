"""Pinned HTTP clients over real TLS: the connection goes to the pinned address while
the Host header, SNI and certificate verification keep the hostname.

The server is a real TLS listener on loopback with a certificate from a throwaway CA
(made with ``cryptography``). Only the name ``pinned.test`` is a stand-in: the loop's
resolver refuses it, so any attempt to resolve it again fails the test.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore2
import httpx
import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mcp.shared._httpx_utils import create_mcp_http_client

from gateway.pinned_http import (
    PinnedBackend2,
    PinnedTransport1,
    PinnedTransport2,
    mcp_client_factory,
)
from gateway.servers.runtimes.http_channel import HttpChannel
from gateway.ssrf import HostPins, Pin

HOST = "pinned.test"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certs(tmp: Path, san: list[x509.GeneralName]) -> tuple[Path, Path, Path]:
    """(CA cert, leaf cert, leaf key) files; the leaf carries ``san``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test ca"))
        .issuer_name(_name("test ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("leaf"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp / "ca.pem", tmp / "leaf.pem", tmp / "leaf.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class TlsServer:
    port: int
    ca: Path
    sni: list[str | None] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


async def _serve(tmp: Path, san: list[x509.GeneralName]) -> AsyncIterator[TlsServer]:
    ca, cert, key = _certs(tmp, san)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    state = TlsServer(0, ca)

    def on_sni(_sock: Any, name: str | None, _ctx: Any) -> None:
        state.sni.append(name)

    context.sni_callback = on_sni

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"host:"):
                state.hosts.append(line.split(b":", 1)[1].strip().decode())
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length:
            await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: 2\r\nconnection: close\r\n\r\n{}"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()


@pytest.fixture
async def tls(tmp_path: Path) -> AsyncIterator[TlsServer]:
    """A server whose certificate names pinned.test (and not 127.0.0.1)."""
    async for state in _serve(tmp_path, [x509.DNSName(HOST)]):
        yield state


@pytest.fixture
async def no_dns_for_host(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Resolving pinned.test fails (and is recorded); other names resolve as usual."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    asked: list[str] = []

    async def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(str(host))
        if str(host) == HOST:
            raise OSError("pinned.test must not be resolved again")
        return await real(host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", resolve)
    return asked


def _pins() -> HostPins:
    # 127.0.0.1 stands in for a vetted public address (a test cannot listen on one).
    return HostPins([Pin(HOST, 443, ("127.0.0.1",))])


def _client_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


async def test_httpx2_connects_to_the_pin_with_the_hostname_in_sni_and_host(
    tls: TlsServer, no_dns_for_host: list[str]
) -> None:
    transport = PinnedTransport2(_pins(), ssl_context=_client_context(tls.ca))
    async with httpx2.AsyncClient(transport=transport) as client:
        r = await client.get(f"https://{HOST}:{tls.port}/mcp")
    assert r.status_code == 200 and r.json() == {}
    assert tls.sni == [HOST] and tls.hosts == [f"{HOST}:{tls.port}"]
    assert HOST not in no_dns_for_host


async def test_httpx_connects_to_the_pin_too(tls: TlsServer, no_dns_for_host: list[str]) -> None:
    transport = PinnedTransport1(_pins(), ssl_context=_client_context(tls.ca))
    async with httpx.AsyncClient(transport=transport) as client:
        r = await client.get(f"https://{HOST}:{tls.port}/api/search")
    assert r.status_code == 200
    assert tls.sni == [HOST] and tls.hosts == [f"{HOST}:{tls.port}"]
    assert HOST not in no_dns_for_host


async def test_the_certificate_is_verified_for_the_hostname_not_the_address(
    tmp_path: Path, no_dns_for_host: list[str]
) -> None:
    """A certificate valid for the pinned IP but not for the name is refused."""
    async for server in _serve(tmp_path, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]):
        transport = PinnedTransport2(_pins(), ssl_context=_client_context(server.ca))
        async with httpx2.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx2.ConnectError, match="certificate verify failed"):
                await client.get(f"https://{HOST}:{server.port}/mcp")
        # and the fast path's channel, the same
        channel = HttpChannel(f"https://{HOST}:{server.port}/mcp", {}, pins=_pins())
        channel.ssl = _client_context(server.ca)
        with pytest.raises(Exception, match="certificate verify failed"):
            async with channel.post(b"{}"):
                pass
        await channel.close()


async def test_the_fast_path_channel_connects_to_the_pin(
    tls: TlsServer, no_dns_for_host: list[str]
) -> None:
    channel = HttpChannel(f"https://{HOST}:{tls.port}/mcp", {}, pins=_pins())
    channel.ssl = _client_context(tls.ca)
    async with channel.post(b"{}") as response:
        assert response.status == 200 and await response.read() == b"{}"
    await channel.close()
    assert tls.sni == [HOST] and tls.hosts == [f"{HOST}:{tls.port}"]
    assert HOST not in no_dns_for_host


@dataclass
class Recorder(httpcore2.AsyncNetworkBackend):
    """An inner backend that records where it was asked to connect."""

    hosts: list[str] = field(default_factory=list)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        self.hosts.append(host)
        raise httpcore2.ConnectError("recorded")


async def test_the_backend_maps_names_to_pins_and_vets_the_rest() -> None:
    inner = Recorder()
    backend = PinnedBackend2(
        HostPins([Pin(HOST, 443, ("93.184.216.34", "2606:4700::1111"))]), inner
    )
    with pytest.raises(httpcore2.ConnectError):
        await backend.connect_tcp(HOST, 443)
    assert inner.hosts[:2] == ["93.184.216.34", "2606:4700::1111"]
    inner.hosts.clear()
    with pytest.raises(httpcore2.ConnectError, match="MCPGW_ALLOW_PRIVATE_URLS"):
        await backend.connect_tcp("169.254.169.254", 80)  # not pinned: vetted, refused
    assert inner.hosts == []


def test_no_pins_or_a_proxy_keep_the_sdk_client(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"https://{HOST}/mcp"
    assert mcp_client_factory(url, None) is create_mcp_http_client
    assert mcp_client_factory(url, _pins()) is not create_mcp_http_client
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert mcp_client_factory(url, _pins()) is create_mcp_http_client
