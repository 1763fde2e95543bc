"""SSRF guard for URLs the gateway connects to on an admin's behalf."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from gateway.servers.runtimes.base import BackendUnavailable

ALLOW_SETTING = "MCPGW_ALLOW_PRIVATE_URLS"


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


async def check_url(url: str, allow_private: bool, *, must_resolve: bool = True) -> None:
    """Raise unless every address ``url``'s host resolves to is public (or allowed).

    ``must_resolve=False`` (registration time) lets a host that does not resolve
    yet through; the check runs again, resolving, on every connect.
    """
    if allow_private:
        return
    host = urlsplit(url).hostname or ""
    try:
        literal = ipaddress.ip_address(host)
        addresses = [literal]
    except ValueError:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            if not must_resolve:
                return
            raise BackendUnavailable(f"cannot resolve host {host!r}: {exc}") from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    bad = sorted({str(a) for a in addresses if _forbidden(a)})
    if bad:
        raise BackendUnavailable(
            f"{host!r} resolves to a loopback/private address ({', '.join(bad)}); "
            f"set {ALLOW_SETTING}=true to allow such servers"
        )
