"""Admission: may this request reach an upstream at all?

Public routes spend the client address' (or the webhook) bucket; every other
route needs a bearer token (verified, cached until ``exp`` while its key is
still published), a session not revoked and an organization not suspended
(:class:`pytake_api_gateway.tokens.TokenGate`), scopes that open the route when
the token is an API client's narrowed one (:mod:`pytake_common.scopes`, the
same rule every service applies), then spends the organization's bucket
(:class:`pytake_api_gateway.ratelimit.EdgeRateLimits`).
A refusal is raised as :class:`Refused` (the rare path); admission returns the
rate-limit decision whose headers go on the answer.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from pytake_api_gateway.ratelimit import Decision, EdgeRateLimits
from pytake_api_gateway.routing import PUBLIC_ROUTES, WEBHOOK_PATH
from pytake_api_gateway.tokens import Identity, Refusal, TokenGate
from pytake_common.scopes import allows, refusal


class Refused(Exception):
    """Why a request is not forwarded: a problem's status, code, title and detail."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        decision: Decision | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        #: A rate-limit refusal: its ``RateLimit-*`` headers go on the answer.
        self.decision = decision
        self.extra = extra

    @classmethod
    def of(cls, refusal: Refusal) -> Refused:
        return cls(refusal.status, refusal.code, refusal.title, refusal.detail)

    @classmethod
    def scope(cls, method: str, path: str) -> Refused:
        needed, detail = refusal(method, path)
        return cls(403, "insufficient_scope", "Insufficient scope", detail, required_scope=needed)

    @classmethod
    def rate_limited(cls, decision: Decision) -> Refused:
        return cls(
            429,
            "rate_limited",
            "Too many requests",
            f"rate limit exceeded; retry in {decision.retry_after_s} s",
            decision=decision,
            retry_after=decision.retry_after_s,
        )


def bearer(value: bytes | None) -> str | None:
    if value is None:
        return None
    scheme, _, token = value.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return token.strip().decode("latin-1") or None


class Admission:
    def __init__(self, gate: TokenGate, limits: EdgeRateLimits) -> None:
        self.gate = gate
        self.limits = limits

    async def http(
        self, method: str, path: str, authorization: bytes | None, address: str | None
    ) -> tuple[Decision | None, str | None]:
        """The rate-limit decision to report on the answer, and the caller's
        organization (``None`` on public routes); raises :class:`Refused`."""
        decision: Decision | None
        organization: str | None = None
        if (method, path) in PUBLIC_ROUTES:
            limits = self.limits
            decision = limits.webhook(address) if path == WEBHOOK_PATH else limits.client(address)
        else:
            identity = await self._identity(bearer(authorization))
            if identity.scopes is not None and not allows(identity.scopes, method, path):
                raise Refused.scope(method, path)
            organization = identity.organization_key
            decision = self.limits.organization(identity.organization_id, organization)
        if decision is not None and not decision.allowed:
            raise Refused.rate_limited(decision)
        return decision, organization

    async def websocket(
        self, authorization: bytes | None, query: bytes, path: str = "/v1/stream"
    ) -> Identity:
        """The caller of a WebSocket handshake; raises :class:`Refused`.

        Browsers cannot set headers on a WebSocket: ``?access_token=`` is accepted
        too (and forwarded untouched with the query string). More than one
        ``access_token`` is refused (400 ``duplicate_access_token``): this parser
        would read the first, conversations' (Starlette) the last.
        """
        token = bearer(authorization)
        if query:
            tokens = parse_qs(query.decode("latin-1"), keep_blank_values=True).get(
                "access_token", []
            )
            if len(tokens) > 1:
                raise Refused(
                    400,
                    "duplicate_access_token",
                    "Bad request",
                    "more than one access_token in the query",
                )
            if token is None and tokens:
                token = tokens[0] or None
        identity = await self._identity(token)
        if identity.scopes is not None and not allows(identity.scopes, "GET", path):
            raise Refused.scope("GET", path)
        decision = self.limits.organization(identity.organization_id, identity.organization_key)
        if decision is not None and not decision.allowed:
            raise Refused.rate_limited(decision)
        return identity

    async def _identity(self, token: str | None) -> Identity:
        gate = self.gate
        identity = gate.cached(token) if token is not None else None
        if identity is None:
            verified = await gate.verify(token)
            if isinstance(verified, Refusal):
                raise Refused.of(verified)
            identity = verified
        refusal = gate.revoked(identity)
        if refusal is not None:
            raise Refused.of(refusal)
        return identity
