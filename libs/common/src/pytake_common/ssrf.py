"""Where an outgoing request may go: public addresses only, and exactly the address checked.

A URL a customer configures (a webhook endpoint, a chatbot flow's HTTP call) must not
become a way into the platform's network. At send time the host is resolved and every
address that is not global unicast (loopback, private, link-local, shared, reserved,
multicast, cloud metadata such as 169.254.169.254 or fd00:ec2::254) is refused. The
connection then goes to an address that passed: :class:`VettingResolver` is the aiohttp
resolver, so the check and the connect use the same answer and a DNS rebinding between
the two cannot exist. TLS SNI and ``Host`` stay the URL's host name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult

from pytake_common.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: host, port -> addresses (tests inject one; production asks the system resolver)
Lookup = Callable[[str, int], Awaitable[list[str]]]

#: Named for the reader: each is already refused as non-global.
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)


class DestinationRefused(OSError):
    """The destination resolves to an address requests may not reach."""


def refusal_in(exc: BaseException) -> str | None:
    """The refusal behind a client error (aiohttp wraps the resolver's), or None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DestinationRefused):
            return str(seen)
        seen = seen.__cause__ or getattr(seen, "os_error", None)
        if seen is exc:
            break
    return None


def refusal(address: IPAddress, *, allow_loopback: bool) -> str | None:
    """Why ``address`` may not be reached, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA:
        return "a cloud metadata address"
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a reserved address"
    return None


def literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_literal(host: str, *, allow_loopback: bool) -> None:
    """Refuse a URL whose host is an IP address requests may not reach (422)."""
    address = literal(host)
    if address is not None and (why := refusal(address, allow_loopback=allow_loopback)):
        raise InvalidInput(f"the URL's host is {why}")


async def system_lookup(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


class VettingResolver(AbstractResolver):
    """aiohttp's resolver: only vetted addresses come back, so only they are connected to."""

    def __init__(self, lookup: Lookup = system_lookup, *, allow_loopback: bool = False) -> None:
        self.lookup = lookup
        self.allow_loopback = allow_loopback

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            found = await self.lookup(host, port)
        except OSError as exc:
            raise OSError(f"cannot resolve {host}: {exc}") from exc
        vetted: list[ResolveResult] = []
        reasons: list[str] = []
        for raw in found:
            address = ipaddress.ip_address(raw.split("%", 1)[0])
            if why := refusal(address, allow_loopback=self.allow_loopback):
                reasons.append(f"{address} is {why}")
                continue
            vetted.append(_result(host, address, port))
        if not vetted:
            raise DestinationRefused(
                f"{host} resolves only to refused addresses: " + "; ".join(reasons or ["none"])
            )
        return vetted

    async def close(self) -> None:
        return None


def _result(host: str, address: IPAddress, port: int) -> Any:
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return ResolveResult(
        hostname=host,
        host=str(address),
        port=port,
        family=family,
        proto=0,
        flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
    )
