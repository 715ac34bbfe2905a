"""JWT verification against auth's JWKS, the request principal, and role checks.

Tokens are EdDSA (Ed25519) signed by auth only; ``alg`` is pinned. Keys are
cached by ``kid``; the JWKS is fetched again when it is older than ``cache_ttl_s``
or an unknown ``kid`` appears (rotation). Auth being slow or down must not take
every service with it, so the fetch is careful:

- one HTTP client per verifier, reused (closed by :meth:`JWKSVerifier.aclose`);
- single flight: concurrent requests share the one fetch in progress;
- keys already held keep verifying: a stale JWKS is refreshed while the request
  waits at most ``stale_wait_s`` after the fetch began (then it uses what it holds),
  and only a request whose ``kid`` is unknown waits for the fetch's outcome;
- after a failed fetch, none starts again before a backoff (doubling from
  ``backoff_initial_s`` to ``backoff_max_s``, with jitter so replicas do not retry in
  step); an unknown ``kid`` triggers at most one fetch per ``min_refresh_s`` while
  auth answers, and none during a backoff, so garbage kids cannot make us hammer it.

A verified token's claims (and its :class:`Principal`) are kept in a bounded
cache until the token's ``exp``, so a client's next requests skip the base64,
JSON and Ed25519 work (about a tenth of a hot read's CPU). An entry is used
only while the token has not expired, its ``kid`` is still among the signing
keys and the JWKS is fresh (``cache_ttl_s``) or cannot be refreshed now (backoff);
otherwise the token is verified in full again. Revocation and suspension are not
part of the cache: they are checked on every request (:func:`enforce_policies`).

API clients (``POST /v1/auth/token``, client credentials) hold the same tokens, with a
``client_id`` claim and optionally a ``scope`` claim; :func:`current_principal` refuses a
request its scopes do not open (:mod:`pytake_common.scopes`), before any role check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

import httpx
import jwt
from fastapi import Depends, Request
from jwt import PyJWK

from pytake_common.context import organization_id_var
from pytake_common.errors import Forbidden, OrganizationSuspended, SessionRevoked, Unauthorized
from pytake_common.scopes import check_scope, parse_scope

log = logging.getLogger("pytake.security")

ALGORITHMS = ["EdDSA"]
#: longer tokens are verified every time, never cached (bounds the cache's memory)
MAX_CACHED_TOKEN = 4096


PrincipalKind = Literal["user", "api_client"]


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
    #: the ``scope`` claim (API-client tokens may narrow their role); None: not narrowed
    scopes: frozenset[str] | None = None
    #: set when an API client, not a person, holds the token (then ``user_id`` is
    #: this id too: the token's subject, RFC 9068 §2.2)
    client_id: uuid.UUID | None = None

    @property
    def is_client(self) -> bool:
        return self.client_id is not None

    @property
    def kind(self) -> PrincipalKind:
        """Who ``user_id`` is: a person, or an API client (to attribute what they do)."""
        return "api_client" if self.client_id is not None else "user"

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Principal:
        try:
            client = claims.get("client_id")
            principal = cls(
                user_id=uuid.UUID(claims["sub"]),
                organization_id=uuid.UUID(claims["org"]),
                role=Role(claims["role"]),
                session_id=claims.get("sid"),
                token_id=claims.get("jti"),
                scopes=parse_scope(claims.get("scope")),
                client_id=uuid.UUID(client) if client is not None else None,
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise Unauthorized("token is missing required claims") from exc
        if principal.client_id is not None and principal.client_id != principal.user_id:
            raise Unauthorized("a client token's subject must be the client")
        return principal


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
        fetch_timeout_s: float = 5.0,
        stale_wait_s: float = 0.5,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
    ) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.cache_ttl_s = cache_ttl_s
        self.min_refresh_s = min_refresh_s
        self.fetch_timeout_s = fetch_timeout_s
        self.stale_wait_s = stale_wait_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._client = client
        self._owns_client = client is None
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = -math.inf  # last successful fetch (monotonic)
        self._attempted_at = -math.inf  # last fetch started
        self._retry_at = -math.inf  # no fetch starts before this (backoff)
        self._failures = 0  # consecutive failed fetches
        self._fetch: asyncio.Task[None] | None = None
        #: fetches started (a gauge for tests and debugging)
        self.fetches = 0
        self.cache_size = cache_size
        #: token -> (claims, principal, exp, kid), oldest first
        self._verified: dict[str, tuple[dict[str, Any], Principal, float, str]] = {}

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.fetch_timeout_s, limits=httpx.Limits(max_connections=2)
            )
        return self._client

    async def aclose(self) -> None:
        """Stop a fetch in flight and close the HTTP client this verifier created."""
        if self._fetch is not None:
            self._fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fetch
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _backing_off(self, now: float) -> bool:
        return now < self._retry_at

    def _fetch_task(self, *, unknown_kid: bool) -> asyncio.Task[None] | None:
        """The fetch in flight, or a new one if one may start now, else None."""
        if self._fetch is not None:
            return self._fetch
        now = time.monotonic()
        if self._backing_off(now):
            return None
        if unknown_kid:
            if now - self._attempted_at < self.min_refresh_s:
                return None
        elif now - self._fetched_at < self.cache_ttl_s:
            return None
        self._attempted_at = now
        self.fetches += 1
        self._fetch = asyncio.create_task(self._fetch_keys())
        return self._fetch

    async def _fetch_keys(self) -> None:
        try:
            # The client's timeout bounds each phase; this bounds the whole fetch (a
            # server dripping bytes must not hold the single flight for longer).
            async with asyncio.timeout(self.fetch_timeout_s):
                resp = await self._http().get(self.jwks_url)
            resp.raise_for_status()
            body = resp.json()
            keys = {k["kid"]: PyJWK(k) for k in body.get("keys", []) if "kid" in k}
        except (
            TimeoutError,
            httpx.HTTPError,
            ValueError,
            TypeError,
            AttributeError,
            jwt.PyJWTError,
        ) as exc:
            self._failures += 1
            delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (self._failures - 1))
            delay *= random.uniform(0.5, 1.0)
            self._retry_at = time.monotonic() + delay
            log.warning(
                "JWKS fetch failed; serving with the keys held",
                extra={
                    "error": repr(exc)[:300],
                    "keys_held": len(self._keys),
                    "retry_in_s": round(delay, 2),
                },
            )
        else:
            self._keys = keys
            self._fetched_at = time.monotonic()
            self._failures = 0
            self._retry_at = -math.inf
        finally:
            self._fetch = None

    async def key_for(self, kid: str) -> PyJWK:
        key = self._keys.get(kid)
        if key is not None:
            if time.monotonic() - self._fetched_at < self.cache_ttl_s:
                return key
            # Stale: refresh, but a slow auth delays a request only briefly.
            task = self._fetch_task(unknown_kid=False)
            if task is not None:
                wait = self._attempted_at + self.stale_wait_s - time.monotonic()
                if wait > 0:
                    await asyncio.wait({task}, timeout=wait)
            key = self._keys.get(kid)
            if key is None:  # the refresh dropped it: no longer published
                raise Unauthorized("unknown signing key")
            return key
        task = self._fetch_task(unknown_kid=True)
        if task is not None:
            await asyncio.shield(task)  # ends within the client's timeout
        key = self._keys.get(kid)
        if key is None:
            if not self._keys:
                raise Unauthorized("signing keys unavailable")
            raise Unauthorized("unknown signing key")
        return key

    def cached(self, token: str) -> tuple[dict[str, Any], Principal] | None:
        """The claims and principal of a token verified before, while they still hold."""
        entry = self._verified.get(token)
        if entry is None:
            return None
        claims, principal, exp, kid = entry
        now = time.monotonic()
        if (
            time.time() < exp
            and kid in self._keys
            and (now - self._fetched_at < self.cache_ttl_s or self._backing_off(now))
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
    if principal.scopes is not None:  # an API client narrowed below its role
        check_scope(principal.scopes, request.method, request.url.path)
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
