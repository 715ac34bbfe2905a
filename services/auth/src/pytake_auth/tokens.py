"""Access tokens (EdDSA JWTs) and opaque refresh tokens."""

import hashlib
import secrets
import time
import uuid

import jwt

from pytake_auth.config import Settings
from pytake_auth.keys import ALGORITHM, SigningKey

REFRESH_TOKEN_BYTES = 32


def mint_access_token(
    key: SigningKey,
    settings: Settings,
    *,
    user_id: uuid.UUID,
    organization_id: uuid.UUID,
    role: str,
    session_id: uuid.UUID,
    now: float | None = None,
) -> str:
    """A signed access token; its claims are exactly the ones the platform verifies."""
    issued_at = time.time() if now is None else now
    issued = int(issued_at)
    claims: dict[str, object] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user_id),
        "org": str(organization_id),
        "role": role,
        "sid": str(session_id),
        "jti": str(uuid.uuid4()),
        "iat": _numeric_date(issued_at),
        "nbf": issued,
        "exp": issued + settings.access_token_ttl_s,
    }
    return _sign(key, claims)


def mint_client_token(
    key: SigningKey,
    settings: Settings,
    *,
    client_id: uuid.UUID,
    organization_id: uuid.UUID,
    role: str,
    secret_id: uuid.UUID,
    scope: str | None,
    not_after: int | None,
    now: float | None = None,
) -> tuple[str, int]:
    """An API client's access token (RFC 9068 profile: ``sub`` and ``client_id`` are the
    client, ``sid`` its secret generation) and its lifetime in seconds; it never
    outlives ``not_after``, the client's own expiry."""
    issued_at = time.time() if now is None else now
    issued = int(issued_at)
    expires = issued + settings.access_token_ttl_s
    if not_after is not None:
        expires = min(expires, not_after)
    claims: dict[str, object] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(client_id),
        "client_id": str(client_id),
        "org": str(organization_id),
        "role": role,
        "sid": str(secret_id),
        "jti": str(uuid.uuid4()),
        "iat": _numeric_date(issued_at),
        "nbf": issued,
        "exp": expires,
    }
    if scope is not None:
        claims["scope"] = scope
    return _sign(key, claims), expires - issued


def _numeric_date(at: float) -> float | int:
    """``iat`` to the millisecond (RFC 7519 NumericDates may be non-integer): revocation
    compares it with the instant a user's tokens were cut off, and a whole second would
    refuse a token issued just after a password change in the same second."""
    return round(at, 3) if at != int(at) else int(at)


def _sign(key: SigningKey, claims: dict[str, object]) -> str:
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})


def new_refresh_token() -> tuple[str, str]:
    """A fresh opaque refresh token and the hash stored in its place."""
    token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
