"""SSRF guard for URLs the gateway connects to on someone's behalf.

A host passes only when every address it resolves to is global unicast: an IPv4
address outside the IANA special-purpose blocks that are not globally reachable,
or an IPv6 address in ``2000::/3`` outside those blocks. An IPv6 address that
carries an IPv4 address (IPv4-mapped, IPv4-compatible, 6to4, NAT64, Teredo) passes
only when the IPv4 address inside passes. Multicast never passes.

Checking is half of it: the name must not be resolved again, to another answer,
when the gateway connects (DNS rebinding). :func:`check_url` therefore returns the
addresses it approved (a :class:`Pin`), and every HTTP client that fetches such a
URL connects to those addresses through :class:`HostPins` (see
:mod:`gateway.pinned_http` and the fast path's ``http_channel``), keeping the
hostname for the Host header and for TLS (SNI and certificate verification).
``MCPGW_ALLOW_PRIVATE_URLS=true`` turns both off.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from gateway.backend_errors import BackendUnavailable

ALLOW_SETTING = "MCPGW_ALLOW_PRIVATE_URLS"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# IANA IPv4 special-purpose blocks that are not globally reachable (or are multicast).
# Python 3.11's ``is_global`` predates several entries (100.64.0.0/10 is there, but
# 192.0.0.8 counts as global), so the table is ours.
_V4_REFUSED = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier NAT; 100.100.100.200 is a metadata IP)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments (192.0.0.8 dummy, 192.0.0.170 NAT64 …)
        "192.0.2.0/24",
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255
    )
)
# Global unicast IPv6 is 2000::/3; inside it, these blocks are not globally reachable.
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V6_REFUSED = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments (Teredo, 2001::/32, is unwrapped first)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (2024)
    )
)
# IPv6 forms that carry an IPv4 address in their last 32 bits.
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated; also holds :: and ::1
_NAT64 = (
    ipaddress.IPv6Network("64:ff9b::/96"),  # well-known prefix
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # local-use prefix (the /96 layout is read)
)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 addresses an IPv6 address stands for, or None if it is plain IPv6."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.teredo is not None:
        server, client = address.teredo  # client: the de-obfuscated last 32 bits
        return [server, client]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address in _V4_COMPATIBLE or any(address in net for net in _NAT64):
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return None


def _public_v4(address: ipaddress.IPv4Address) -> bool:
    return address.is_global and not any(address in net for net in _V4_REFUSED)


def is_public(address: Address) -> bool:
    """Is ``address`` global unicast (for an IPv4-carrying IPv6 form: its IPv4 address)?"""
    if isinstance(address, ipaddress.IPv4Address):
        return _public_v4(address)
    address = ipaddress.IPv6Address(int(address))  # drop a %scope
    wrapped = _embedded_ipv4(address)
    if wrapped is not None:
        return all(_public_v4(v4) for v4 in wrapped)
    return (
        address in _V6_GLOBAL_UNICAST
        and address.is_global
        and not any(address in net for net in _V6_REFUSED)
    )


class Unresolvable(BackendUnavailable):
    """The host does not resolve (message starts with ``cannot resolve``)."""


def _refused(host: str, bad: Iterable[str]) -> BackendUnavailable:
    return BackendUnavailable(
        f"{host!r} resolves to a loopback/private/non-public address ({', '.join(bad)}); "
        f"set {ALLOW_SETTING}=true to allow such servers"
    )


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def vet_host(host: str) -> tuple[str, ...]:
    """Resolve ``host`` once and return its addresses (resolver order) if all are public.

    Raises :class:`BackendUnavailable`: ``cannot resolve host …`` when it does not
    resolve, else naming the addresses that are not public.
    """
    literal = _literal(host)
    if literal is not None:
        if not is_public(literal):
            raise _refused(host, [str(literal)])
        return (str(literal),)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unresolvable(f"cannot resolve host {host!r}: {exc}") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise Unresolvable(f"cannot resolve host {host!r}: no addresses")
    bad = sorted(a for a in addresses if not is_public(ipaddress.ip_address(a)))
    if bad:
        raise _refused(host, bad)
    return addresses


@dataclass(frozen=True)
class Pin:
    """A URL's host and port with the addresses the guard approved for it."""

    host: str
    port: int
    addresses: tuple[str, ...]


def url_host_port(url: str) -> tuple[str, int]:
    """The host (lower case, no brackets) and port (scheme default) of an http(s) URL."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


async def check_url(url: str, allow_private: bool, *, must_resolve: bool = True) -> Pin | None:
    """Raise unless every address ``url``'s host resolves to is public (or allowed).

    Returns the approved addresses: connect to those, not to a new DNS answer (see
    :class:`HostPins`). None when private URLs are allowed (nothing is checked) or
    when ``must_resolve=False`` (registration time) and the host does not resolve
    yet; the check then runs again, resolving, on every connect.
    """
    if allow_private:
        return None
    host, port = url_host_port(url)
    if not host:
        raise Unresolvable(f"cannot resolve host: the URL {url!r} names none")
    try:
        addresses = await vet_host(host)
    except Unresolvable:
        if not must_resolve:
            return None
        raise
    return Pin(host, port, addresses)


def _key(host: str) -> str:
    host = host.strip("[]").lower()
    if not host.isascii():
        # httpx asks for the IDNA (punycode) form of a name urlsplit gives in Unicode.
        with contextlib.suppress(UnicodeError):
            host = host.encode("idna").decode("ascii")
    return host


class HostPins:
    """The addresses approved per host for one client's connections.

    Lookups of a pinned host cost a dict access (no DNS: the fast path reads this on
    every new connection). A host not pinned yet is vetted on first use, so a client
    never connects anywhere unchecked. Re-resolution policy: pins last as long as the
    client (one backend session; a reconnecting session vets again from scratch), and
    :meth:`refresh` re-resolves *and re-checks* a host when none of its pinned
    addresses accepts a connection any more (the backend moved).
    """

    def __init__(self, pins: Iterable[Pin] = ()) -> None:
        self._addresses: dict[str, tuple[str, ...]] = {}
        for pin in pins:
            self._addresses[_key(pin.host)] = pin.addresses

    @classmethod
    def of(cls, pin: Pin | None) -> HostPins | None:
        """Pins seeded with ``pin``; None without one (private URLs allowed: no pinning)."""
        return None if pin is None else cls([pin])

    def get(self, host: str) -> tuple[str, ...] | None:
        """The approved addresses of ``host`` if it is pinned (never resolves)."""
        return self._addresses.get(_key(host))

    async def addresses(self, host: str) -> tuple[str, ...]:
        """The approved addresses of ``host``, vetting it first if it is not pinned yet."""
        pinned = self.get(host)
        return pinned if pinned is not None else await self.refresh(host)

    async def refresh(self, host: str) -> tuple[str, ...]:
        """Resolve and check ``host`` again; the new answer replaces the pin.

        Raises :class:`BackendUnavailable` (and drops the pin) when the host no longer
        resolves or now resolves to an address that is not public.
        """
        key = _key(host)
        try:
            addresses = await vet_host(key)
        except BackendUnavailable:
            self._addresses.pop(key, None)
            raise
        self._addresses[key] = addresses
        return addresses


def proxied(url: str) -> bool:
    """Would httpx send this URL through a proxy (from the environment)?

    Then the proxy resolves and connects, not the gateway: nothing to pin (the guard's
    check still runs), and the fast path leaves such backends to the SDK client.
    """
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if parts.scheme not in proxies and "all" not in proxies:
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


Stream = TypeVar("Stream")


async def connect_pinned(
    pins: HostPins,
    host: str,
    connect: Callable[[str], Awaitable[Stream]],
    failures: tuple[type[Exception], ...],
    refused: Callable[[str], Exception],
) -> Stream:
    """``connect(address)`` to each approved address of ``host`` in turn; the first that
    answers wins. When none does, the host is re-resolved and re-checked once (it may
    have moved) and the addresses not tried yet are tried; if it no longer resolves,
    the last connect error is raised.

    ``failures`` are the connect errors that move on to the next address; a guard
    refusal is raised as ``refused(message)`` (the caller's connect error).
    """
    try:
        addresses = await pins.addresses(host)
    except BackendUnavailable as exc:
        raise refused(str(exc)) from None
    tried: set[str] = set()
    last: Exception | None = None
    for attempt in range(2):
        for address in addresses:
            if address in tried:
                continue
            tried.add(address)
            try:
                return await connect(address)
            except failures as exc:
                last = exc
        if attempt == 0:
            try:
                addresses = await pins.refresh(host)
            except Unresolvable:
                break  # DNS trouble says less than the connect error
            except BackendUnavailable as exc:
                raise refused(str(exc)) from None
    assert last is not None  # a vetted host has at least one address
    raise last
