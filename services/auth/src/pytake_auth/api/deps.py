"""Dependencies shared by auth's routers: settings, database, throttle, client address."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from pytake_auth.config import Settings
from pytake_auth.throttle import Rules, Throttle, throttle_source


async def client_address(request: Request) -> str:
    """The client's address as the throttle counts it (:func:`throttle_source`): the
    first ``X-Forwarded-For`` entry when the direct peer is a trusted proxy, else the
    peer itself."""
    settings: Settings = request.app.state.settings
    peer = request.client.host if request.client else ""
    if peer and settings.is_trusted_proxy(peer):
        forwarded = request.headers.get("x-forwarded-for", "")
        first = forwarded.split(",")[0].strip()
        if first:
            return throttle_source(first[:64])
    return throttle_source(peer) if peer else "unknown"


async def _throttle(request: Request) -> Throttle:
    throttle: Throttle = request.app.state.throttle
    return throttle


async def _rules(request: Request) -> Rules:
    rules: Rules = request.app.state.throttle_rules
    return rules


ClientAddress = Annotated[str, Depends(client_address)]
ThrottleDep = Annotated[Throttle, Depends(_throttle)]
RulesDep = Annotated[Rules, Depends(_rules)]
