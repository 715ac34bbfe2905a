"""JWT verification against auth's JWKS, the request principal, and role checks.

Tokens are EdDSA (Ed25519) signed by auth only; ``alg`` is pinned. Keys are
cached by ``kid`` and the JWKS is refetched when an unknown ``kid`` appears
(rotation), at most once per ``min_refresh_s`` so garbage kids cannot make us
hammer auth.

A verified token's claims (and its :class:`Principal`) are kept in a bounded
cache until the token's ``exp``, so a client's next requests skip the base64,
JSON and Ed25519 work (about a tenth of a hot read's CPU). An entry is used
only while the token has not expired, its ``kid`` is still among the signing
keys and the JWKS is fresh (``cache_ttl_s``); otherwise the token is verified
in full again. Revocation and suspension are not part of the cache: they are
checked on every request (:func:`enforce_policies`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import httpx
import jwt
from fastapi import Depends, Request
from jwt import PyJWK

from pytake_common.context import organization_id_var
from pytake_common.errors import Forbidden, OrganizationSuspended, SessionRevoked, Unauthorized

ALGORITHMS = ["EdDSA"]
#: longer tokens are verified every time, never cached (bounds the cache's memory)
MAX_CACHED_TOKEN = 4096


class Role(StrEnum):
    SUPER_ADMIN = "super_admin"
    ORG_ADMIN = "org_admin"
    AGENT = "agent"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    organization_id: uuid.UUID
    role: Role
    session_id: str | None
    token_id: str | None

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Principal:
        try:
            return cls(
                user_id=uuid.UUID(claims["sub"]),
                organization_id=uuid.UUID(claims["org"]),
                role=Role(claims["role"]),
                session_id=claims.get("sid"),
                token_id=claims.get("jti"),
            )
        except (KeyError, ValueError) as exc:
            raise Unauthorized("token is missing required claims") from exc


class JWKSVerifier:
    def __init__(
        self,
        jwks_url: str,
        *,
        issuer: str,
        audience: str,
        cache_ttl_s: float = 300.0,
        min_refresh_s: float = 1.0,
        client: httpx.AsyncClient | None = None,
        cache_size: int = 10_000,
    ) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.cache_ttl_s = cache_ttl_s
        self.min_refresh_s = min_refresh_s
        self._client = client
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self.cache_size = cache_size
        #: token -> (claims, principal, exp, kid), oldest first
        self._verified: dict[str, tuple[dict[str, Any], Principal, float, str]] = {}

    async def _refresh(self, *, force: bool) -> None:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if (force and age < self.min_refresh_s) or (not force and age < self.cache_ttl_s):
                return
            client = self._client or httpx.AsyncClient(timeout=5.0)
            try:
                resp = await client.get(self.jwks_url)
                resp.raise_for_status()
                keys = resp.json().get("keys", [])
            except (httpx.HTTPError, ValueError) as exc:
                if not self._keys:
                    raise Unauthorized("signing keys unavailable") from exc
                return  # keep serving with cached keys while auth is unreachable
            finally:
                if self._client is None:
                    await client.aclose()
            self._keys = {k["kid"]: PyJWK(k) for k in keys if "kid" in k}
            self._fetched_at = time.monotonic()

    async def key_for(self, kid: str) -> PyJWK:
        await self._refresh(force=False)
        if kid not in self._keys:
            await self._refresh(force=True)
        key = self._keys.get(kid)
        if key is None:
            raise Unauthorized("unknown signing key")
        return key

    def cached(self, token: str) -> tuple[dict[str, Any], Principal] | None:
        """The claims and principal of a token verified before, while they still hold."""
        entry = self._verified.get(token)
        if entry is None:
            return None
        claims, principal, exp, kid = entry
        if (
            time.time() < exp
            and kid in self._keys
            and time.monotonic() - self._fetched_at < self.cache_ttl_s
        ):
            return claims, principal
        del self._verified[token]
        return None

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims (shared with the cache: read them, do not change them)."""
        claims, _ = await self.verified(token)
        return claims

    async def verified(self, token: str) -> tuple[dict[str, Any], Principal]:
        """The token's claims and principal, from the cache or verified in full."""
        hit = self.cached(token)
        if hit is not None:
            return hit
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("malformed token") from exc
        if header.get("alg") not in ALGORITHMS or not header.get("kid"):
            raise Unauthorized("token algorithm or key id not accepted")
        kid = str(header["kid"])
        key = await self.key_for(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid token") from exc
        principal = Principal.from_claims(claims)
        if self.cache_size > 0 and len(token) <= MAX_CACHED_TOKEN:
            cache = self._verified
            while len(cache) >= self.cache_size:
                del cache[next(iter(cache))]  # the oldest
            cache[token] = (claims, principal, float(claims["exp"]), kid)
        return claims, principal

    async def principal(self, token: str) -> Principal:
        _, principal = await self.verified(token)
        return principal


def bearer_token(request: Request) -> str:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a bearer token is required")
    return token.strip()


async def current_principal(request: Request) -> Principal:
    verifier: JWKSVerifier = request.app.state.verifier
    claims, principal = await verifier.verified(bearer_token(request))
    enforce_policies(request.app.state, claims, principal)
    organization_id_var.set(str(principal.organization_id))
    request.state.principal = principal
    return principal


def enforce_policies(state: Any, claims: dict[str, Any], principal: Principal) -> None:
    """Revoked sessions (401) and suspended organizations (403), from the event replicas."""
    revocations = getattr(state, "revocations", None)
    if revocations is not None and revocations.is_revoked(claims):
        raise SessionRevoked("this session was revoked; sign in again")
    organizations = getattr(state, "organizations", None)
    if (
        organizations is not None
        and principal.role != Role.SUPER_ADMIN
        and organizations.is_suspended(principal.organization_id)
    ):
        raise OrganizationSuspended("the organization is suspended")


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]

READERS = frozenset(Role)
WORKERS = frozenset({Role.SUPER_ADMIN, Role.ORG_ADMIN, Role.AGENT})
ADMINS = frozenset({Role.SUPER_ADMIN, Role.ORG_ADMIN})


async def authorize(request: Request, allowed: frozenset[Role]) -> Principal:
    """The request's principal if its role is in ``allowed`` (401/403 otherwise)."""
    return admit(await current_principal(request), allowed)


def admit(principal: Principal, allowed: frozenset[Role]) -> Principal:
    if principal.role not in allowed:
        raise Forbidden(f"role {principal.role} may not do this")
    return principal


def require_roles(allowed: frozenset[Role]) -> Any:
    """A dependency admitting only ``allowed`` roles (403 otherwise)."""

    async def dependency(principal: CurrentPrincipal) -> Principal:
        return admit(principal, allowed)

    return Depends(dependency)


Reader = Annotated[Principal, require_roles(READERS)]
Worker = Annotated[Principal, require_roles(WORKERS)]
Admin = Annotated[Principal, require_roles(ADMINS)]
