"""The client's address behind the platform's own proxies (Ingress, then the gateway).

Each hop appends the address it saw to ``X-Forwarded-For``; the API gateway
replaces the header with the one address uvicorn resolved from its trusted
proxies (``FORWARDED_ALLOW_IPS``). A service believes the header only from a
direct peer in ``PYTAKE_TRUSTED_PROXIES``; anybody else could write it.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from starlette.requests import Request

Networks = Sequence[IPv4Network | IPv6Network]
#: Loopback only: the gateway and the service on one host (``make run``).
LOOPBACK: list[IPv4Network | IPv6Network] = [ip_network("127.0.0.1/32"), ip_network("::1/128")]


def is_in(address: str, networks: Networks) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(request: Request, trusted_proxies: Networks) -> str:
    """The first ``X-Forwarded-For`` entry when the direct peer is a trusted proxy,
    else the peer itself."""
    peer = request.client.host if request.client else ""
    if peer and is_in(peer, trusted_proxies):
        first = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
        if first:
            return first[:64]
    return peer or "unknown"
