"""The SSRF guard: which addresses pass, what it returns, and how pins are used.

Name resolution is replaced by fixed answers where a test needs a name (there is no
public DNS here): the loop's ``getaddrinfo``, which is what the guard calls.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from typing import Any

import pytest

from gateway.servers.runtimes.base import BackendUnavailable
from gateway.ssrf import HostPins, Pin, check_url, connect_pinned, is_public


def _teredo(client: str, server: str = "65.54.227.120") -> str:
    """A Teredo address (2001::/32) for ``client`` (stored obfuscated: bits inverted)."""
    s = int(ipaddress.IPv4Address(server))
    c = int(ipaddress.IPv4Address(client)) ^ 0xFFFFFFFF
    return str(ipaddress.IPv6Address((0x20010000 << 96) | (s << 64) | (0x8000 << 48) | c))


REFUSED = [
    # the finding's list
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "100.100.100.200",  # Alibaba Cloud metadata
    "100.127.255.254",
    "fec0::1",  # site-local (deprecated)
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "192.0.0.8",  # IPv4 dummy address
    "192.0.0.170",  # NAT64 discovery
    "::ffff:100.100.100.200",  # IPv4-mapped forms
    "::ffff:192.0.0.8",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "::a9fe:a9fe",  # IPv4-compatible 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 well-known prefix, 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64, 169.254.169.254
    "64:ff9b:1::a00:1",  # NAT64 local-use prefix, 10.0.0.1
    _teredo("127.0.0.1"),  # Teredo whose client is loopback
    _teredo("10.1.2.3"),
    _teredo("93.184.216.34", server="10.0.0.1"),  # a private Teredo server
    # multicast is not global unicast
    "224.0.0.1",
    "239.255.255.250",
    "233.252.0.1",
    "ff02::1",
    "ff0e::1",
    "::ffff:224.0.0.1",
    # the classics
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.0.10",
    "169.254.169.254",
    "0.0.0.0",  # noqa: S104 (an address refused, not bound)
    "255.255.255.255",
    "240.0.0.1",
    "198.18.0.1",  # benchmarking
    "192.0.2.1",  # documentation
    "::1",
    "::",
    "::ffff:127.0.0.1",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "2001:db8::1",  # documentation
    "3fff::1",  # documentation (2024)
    "5f00::1",  # SRv6 SIDs
    "100::1",  # discard-only
    "4000::1",  # outside 2000::/3: not allocated for unicast
]
PUBLIC = [
    "93.184.216.34",
    "1.1.1.1",
    "8.8.8.8",
    "2606:4700::1111",
    "2a00:1450:4001:81b::200e",
    "::ffff:93.184.216.34",
    "2002:5db8:d822::1",  # 6to4 of a public address
    "64:ff9b::5db8:d822",  # NAT64 of a public address
    _teredo("93.184.216.34"),
]


def _url(address: str) -> str:
    return f"http://[{address}]/mcp" if ":" in address else f"http://{address}/mcp"


@pytest.mark.parametrize("address", REFUSED)
async def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))
    with pytest.raises(BackendUnavailable, match="MCPGW_ALLOW_PRIVATE_URLS"):
        await check_url(_url(address), allow_private=False)
    assert await check_url(_url(address), allow_private=True) is None  # the opt-out


@pytest.mark.parametrize("address", PUBLIC)
async def test_public_addresses_pass_and_are_returned(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))
    pin = await check_url(_url(address), allow_private=False)
    assert pin == Pin(address, 80, (str(ipaddress.ip_address(address)),))


async def test_localhost_and_unresolvable_hosts_depend_on_mode() -> None:
    with pytest.raises(BackendUnavailable, match="MCPGW_ALLOW_PRIVATE_URLS"):
        await check_url("http://localhost/mcp", allow_private=False)
    assert await check_url("https://no-such-host.invalid/mcp", False, must_resolve=False) is None
    with pytest.raises(BackendUnavailable, match="cannot resolve"):
        await check_url("https://no-such-host.invalid/mcp", allow_private=False)


class Resolver:
    """A stand-in for DNS: fixed answers per name, and a count of every question."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: object, **_: object) -> list[tuple[Any, ...]]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(f"no such host {host}")
        return [(0, 0, 0, "", (a, 0)) for a in self.answers[host]]


@pytest.fixture
async def dns(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    resolver = Resolver({})
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolver)
    return resolver


async def test_a_name_passes_only_if_every_address_is_public(dns: Resolver) -> None:
    dns.answers["mixed.example"] = ["93.184.216.34", "100.100.100.200"]
    dns.answers["ok.example"] = ["93.184.216.34", "2606:4700::1111", "93.184.216.34"]
    with pytest.raises(BackendUnavailable, match=re.escape("100.100.100.200")):
        await check_url("https://mixed.example/mcp", allow_private=False)
    pin = await check_url("https://OK.example:8443/mcp", allow_private=False)
    assert pin == Pin("ok.example", 8443, ("93.184.216.34", "2606:4700::1111"))


async def test_pins_are_read_without_resolving_and_refreshed_with_a_check(dns: Resolver) -> None:
    pins = HostPins([Pin("api.example", 443, ("93.184.216.34",))])
    assert pins.get("API.example") == ("93.184.216.34",)
    assert await pins.addresses("api.example") == ("93.184.216.34",)
    assert dns.asked == []  # a pinned host is never resolved again on its own
    dns.answers["api.example"] = ["127.0.0.1"]  # the name now points inside
    with pytest.raises(BackendUnavailable, match=re.escape("127.0.0.1")):
        await pins.refresh("api.example")
    assert pins.get("api.example") is None  # dropped, never trusted unchecked
    dns.answers["other.example"] = ["10.0.0.5"]
    with pytest.raises(BackendUnavailable):
        await pins.addresses("other.example")  # an unpinned host is vetted first


class Refused(Exception):
    pass


async def test_connect_pinned_tries_each_address_then_re_vets_once(dns: Resolver) -> None:
    pins = HostPins([Pin("api.example", 443, ("93.184.216.34", "2606:4700::1111"))])
    tried: list[str] = []

    async def connect(address: str) -> str:
        tried.append(address)
        if address != "8.8.8.8":
            raise ConnectionRefusedError(address)
        return f"connected to {address}"

    dns.answers["api.example"] = ["8.8.8.8", "93.184.216.34"]  # the backend moved
    result = await connect_pinned(pins, "api.example", connect, (OSError,), Refused)
    assert result == "connected to 8.8.8.8"
    assert tried == ["93.184.216.34", "2606:4700::1111", "8.8.8.8"]
    assert dns.asked == ["api.example"]

    dns.answers["api.example"] = ["127.0.0.1"]  # moved inside: refused, not connected
    tried.clear()
    pins = HostPins([Pin("api.example", 443, ("1.1.1.1",))])
    with pytest.raises(Refused, match=re.escape("127.0.0.1")):
        await connect_pinned(pins, "api.example", connect, (OSError,), Refused)
    assert tried == ["1.1.1.1"]


async def test_a_name_gone_from_dns_keeps_the_connect_error(dns: Resolver) -> None:
    pins = HostPins([Pin("api.example", 443, ("93.184.216.34",))])

    async def connect(address: str) -> str:
        raise ConnectionRefusedError(f"refused by {address}")

    with pytest.raises(ConnectionRefusedError, match=re.escape("93.184.216.34")):
        await connect_pinned(pins, "api.example", connect, (OSError,), Refused)
    assert dns.asked == ["api.example"] and pins.get("api.example") is None
