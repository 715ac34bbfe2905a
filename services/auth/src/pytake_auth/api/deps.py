"""Dependencies shared by auth's routers: settings, database, throttle, client address."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from pytake_auth.config import Settings
from pytake_auth.throttle import Rule, Throttle


@dataclass(frozen=True, slots=True)
class Rules:
    login_failures_per_email: Rule
    login_per_address: Rule
    register_per_address: Rule
    register_per_email: Rule
    refresh_per_address: Rule
    refresh_per_user: Rule

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        def rule(name: str, pair: tuple[int, int]) -> Rule:
            return Rule(name, pair[0], pair[1])

        return cls(
            login_failures_per_email=rule(
                "login-failures:email", settings.throttle_login_failures_per_email
            ),
            login_per_address=rule("login:address", settings.throttle_login_per_address),
            register_per_address=rule("register:address", settings.throttle_register_per_address),
            register_per_email=rule("register:email", settings.throttle_register_per_email),
            refresh_per_address=rule("refresh:address", settings.throttle_refresh_per_address),
            refresh_per_user=rule("refresh:user", settings.throttle_refresh_per_user),
        )


async def client_address(request: Request) -> str:
    """The client's address: the first ``X-Forwarded-For`` entry when the direct peer is
    a trusted proxy, else the peer itself."""
    settings: Settings = request.app.state.settings
    peer = request.client.host if request.client else ""
    if peer and settings.is_trusted_proxy(peer):
        forwarded = request.headers.get("x-forwarded-for", "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first[:64]
    return peer or "unknown"


async def _throttle(request: Request) -> Throttle:
    throttle: Throttle = request.app.state.throttle
    return throttle


async def _rules(request: Request) -> Rules:
    rules: Rules = request.app.state.throttle_rules
    return rules


ClientAddress = Annotated[str, Depends(client_address)]
ThrottleDep = Annotated[Throttle, Depends(_throttle)]
RulesDep = Annotated[Rules, Depends(_rules)]
