"""Who is calling: bearer-token verification (cached) and revocation (never cached).

A token's signature and claims are checked once and the result is remembered
until its ``exp``, while its signing key is still in auth's JWKS. What can
change while a token is still valid is asked on every request, against
in-memory replicas of auth's and tenants' events (pytake_common, set on
``app.state`` when the process runs them):

* ``app.state.revocations.is_revoked(claims)``: a logged-out session, or a
  user deactivated, deleted or made to sign in again -> 401 ``session_revoked``;
* ``app.state.organizations.is_suspended(org)``: a suspended organization
  -> 403 ``organization_suspended`` (super admins, the operators, pass).

An API client's token may carry narrower scopes (``Identity.scopes``); admission
refuses a route they do not open (403 ``insufficient_scope``), as the services do.

Without those replicas nothing is revoked at the gateway (the services behind
still check).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytake_common.errors import DomainError
from pytake_common.security import JWKSVerifier, Principal, Role

_MAX_CACHED_TOKEN = 4096


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified token, as the gateway needs it on every request."""

    claims: dict[str, Any]
    expires_at: float
    organization_id: uuid.UUID
    #: ``str(organization_id)``, made once: the rate-limit bucket key.
    organization_key: str
    is_operator: bool
    #: an API client's narrower scopes (:mod:`pytake_common.scopes`); None: its role's
    scopes: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    title: str
    detail: str


MISSING = Refusal(401, "unauthorized", "Authentication required", "a bearer token is required")
REVOKED = Refusal(401, "session_revoked", "Session revoked", "this session has been revoked")
SUSPENDED = Refusal(
    403, "organization_suspended", "Organization suspended", "the organization is suspended"
)


class TokenGate:
    """Bearer-token check with a bounded cache of verified tokens, plus revocation."""

    def __init__(
        self, verifier: Callable[[], JWKSVerifier], cache_size: int, state: object = None
    ) -> None:
        self._verifier = verifier
        self._cache: dict[str, Identity] = {}
        self._cache_size = cache_size
        self._state = state

    def cached(self, token: str) -> Identity | None:
        """Already verified and not expired (the no-await fast path).

        The verifier must still hold the token too: it forgets a token whose
        ``kid`` left the JWKS, and every token once its key set is older than
        ``PYTAKE_JWKS_CACHE_TTL_S`` (then the next request re-verifies it and the
        key set is fetched again). So a key auth withdrew stops admitting
        requests within that TTL, cached or not.
        """
        identity = self._cache.get(token)
        if (
            identity is not None
            and time.time() < identity.expires_at
            and self._verifier().cached(token) is not None
        ):
            return identity
        return None

    async def verify(self, token: str | None) -> Identity | Refusal:
        """The token's identity, or why it is refused (signature and claims only)."""
        if not token:
            return MISSING
        identity = self.cached(token)
        if identity is not None:
            return identity
        self._cache.pop(token, None)
        try:
            claims = await self._verifier().verify(token)
            principal = Principal.from_claims(claims)
        except DomainError as exc:
            return Refusal(401, "unauthorized", "Authentication required", exc.detail or "")
        identity = Identity(
            claims=claims,
            expires_at=float(claims["exp"]),
            organization_id=principal.organization_id,
            organization_key=str(principal.organization_id),
            is_operator=principal.role is Role.SUPER_ADMIN,
            scopes=principal.scopes,
        )
        if self._cache_size > 0 and len(token) <= _MAX_CACHED_TOKEN:
            cache = self._cache
            if len(cache) >= self._cache_size:
                cache.pop(next(iter(cache)))  # oldest first
            cache[token] = identity
        return identity

    def revoked(self, identity: Identity) -> Refusal | None:
        """Asked on every request, cached token or not."""
        state = self._state
        revocations = getattr(state, "revocations", None)
        if revocations is not None and revocations.is_revoked(identity.claims):
            return REVOKED
        if not identity.is_operator:
            organizations = getattr(state, "organizations", None)
            if organizations is not None and organizations.is_suspended(identity.organization_id):
                return SUSPENDED
        return None
