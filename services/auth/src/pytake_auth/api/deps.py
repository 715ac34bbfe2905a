"""Dependencies shared by auth's routers: settings, database, throttle, client address."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from pytake_auth.config import Settings
from pytake_auth.throttle import Rules, Throttle
from pytake_common.peers import client_address as peer_address
from pytake_common.peers import source_group


async def client_address(request: Request) -> str:
    """The client's address as the throttle counts it (:func:`pytake_common.peers.source_group`
    of the address :func:`pytake_common.peers.client_address` believes)."""
    settings: Settings = request.app.state.settings
    address = peer_address(request, settings.trusted_proxies)
    return address if address == "unknown" else source_group(address)


async def _throttle(request: Request) -> Throttle:
    throttle: Throttle = request.app.state.throttle
    return throttle


async def _rules(request: Request) -> Rules:
    rules: Rules = request.app.state.throttle_rules
    return rules


ClientAddress = Annotated[str, Depends(client_address)]
ThrottleDep = Annotated[Throttle, Depends(_throttle)]
RulesDep = Annotated[Rules, Depends(_rules)]
