"""Ed25519 signing keys: generation, rotation, the JWKS, and local verification.

Keys live in ``signing_keys`` (private halves encrypted with ``SecretBox``).
Each replica keeps a copy for ``key_cache_s`` and reloads it lazily. When no
key can sign, or the signing key is older than ``signing_key_rotation_s``, the
replica that notices takes a transaction-scoped advisory lock, re-reads, and
only then adds a key, so replicas never race to create two.

Rotation never breaks a token: a new key is *published* ``key_publish_lead_s``
before it starts signing (JWKS caches learn it first); the key it replaces is
retired at that instant and stays published ``key_publish_tail_s`` more, so
tokens it signed verify until they expire.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt import PyJWK
from jwt.algorithms import OKPAlgorithm
from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_auth.config import Settings
from pytake_auth.tables import signing_keys
from pytake_common.crypto import SecretBox
from pytake_common.db import Database
from pytake_common.errors import ServiceUnavailable, Unauthorized
from pytake_common.security import JWKSVerifier

ALGORITHM = "EdDSA"
LOCK_KEY = zlib.crc32(b"pytake-auth-signing-keys")
SECRET_PURPOSE = "auth-signing-keys"


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an OKP public key (base64url, no padding)."""
    canonical = json.dumps(
        {k: jwk[k] for k in ("crv", "kty", "x")}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def public_jwk(private_key: Ed25519PrivateKey) -> dict[str, Any]:
    jwk: dict[str, Any] = OKPAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    jwk = {"kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"]}
    jwk.update(kid=jwk_thumbprint(jwk), alg=ALGORITHM, use="sig")
    return jwk


@dataclass(frozen=True, slots=True)
class StoredKey:
    kid: str
    public_jwk: dict[str, Any]
    private_key_encrypted: str
    not_before: datetime
    retired_at: datetime | None

    def signs_at(self, now: datetime) -> bool:
        return self.not_before <= now and (self.retired_at is None or self.retired_at > now)


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey


class KeyRing:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._box = SecretBox(settings.secret, purpose=SECRET_PURPOSE)
        self._keys: list[StoredKey] = []
        self._private: dict[str, Ed25519PrivateKey] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    # -- reading -----------------------------------------------------------

    async def signing_key(self) -> SigningKey:
        """The key that signs now (loading, creating or rotating keys as needed)."""
        await self._fresh()
        key = self._current(datetime.now(UTC))
        if key is None:
            await self.refresh()
            key = self._current(datetime.now(UTC))
        if key is None:  # pragma: no cover - refresh() always leaves one
            raise ServiceUnavailable("no signing key available")
        private = self._private.get(key.kid)
        if private is None:
            pem = self._box.decrypt(key.private_key_encrypted).encode()
            loaded = serialization.load_pem_private_key(pem, password=None)
            if not isinstance(loaded, Ed25519PrivateKey):  # pragma: no cover
                raise ServiceUnavailable("stored signing key is not Ed25519")
            private = self._private[key.kid] = loaded
        return SigningKey(key.kid, private)

    async def jwks(self) -> dict[str, Any]:
        """Every published public key: signing, about to sign, or recently retired."""
        await self._fresh()
        return {"keys": [dict(k.public_jwk) for k in self._keys]}

    async def public_key(self, kid: str) -> PyJWK | None:
        await self._fresh()
        key = next((k for k in self._keys if k.kid == kid), None)
        if key is None:
            await self.refresh(min_age_s=1.0)  # another replica may have just rotated
            key = next((k for k in self._keys if k.kid == kid), None)
        return PyJWK(key.public_jwk) if key is not None else None

    # -- loading and rotation ----------------------------------------------

    async def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at >= self.settings.key_cache_s:
            await self.refresh(min_age_s=self.settings.key_cache_s)

    async def refresh(self, *, min_age_s: float = 0.0) -> None:
        """Reload the published keys, adding a key first if one is due.

        Skipped when the copy is younger than ``min_age_s`` (concurrent callers
        that queued on the lock reuse the reload the first one did).
        """
        async with self._lock:
            if time.monotonic() - self._loaded_at < min_age_s:
                return
            async with self.db.transaction() as session:
                keys = await self._published(session)
            if self._rotation_due(keys, datetime.now(UTC)):
                async with self.db.transaction() as session:
                    await session.execute(select(func.pg_advisory_xact_lock(LOCK_KEY)))
                    keys = await self._published(session)  # another replica may have won
                    if self._rotation_due(keys, datetime.now(UTC)):
                        await self._add_key(session, keys)
                        keys = await self._published(session)
            self._keys = keys
            self._private = {
                kid: k for kid, k in self._private.items() if any(s.kid == kid for s in keys)
            }
            self._loaded_at = time.monotonic()

    async def rotate_now(self) -> str:
        """Schedule a replacement of the signing key now, whatever its age; return its kid."""
        async with self._lock:
            async with self.db.transaction() as session:
                await session.execute(select(func.pg_advisory_xact_lock(LOCK_KEY)))
                kid = await self._add_key(session, await self._published(session))
        await self.refresh()
        return kid

    async def _published(self, session: AsyncSession) -> list[StoredKey]:
        cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.key_publish_tail_s)
        rows = (
            await session.execute(
                select(
                    signing_keys.c.kid,
                    signing_keys.c.public_jwk,
                    signing_keys.c.private_key_encrypted,
                    signing_keys.c.not_before,
                    signing_keys.c.retired_at,
                )
                .where(or_(signing_keys.c.retired_at.is_(None), signing_keys.c.retired_at > cutoff))
                .order_by(signing_keys.c.not_before)
            )
        ).all()
        return [
            StoredKey(r.kid, r.public_jwk, r.private_key_encrypted, r.not_before, r.retired_at)
            for r in rows
        ]

    def _current(self, now: datetime) -> StoredKey | None:
        signing = [k for k in self._keys if k.signs_at(now)]
        return max(signing, key=lambda k: k.not_before) if signing else None

    def _rotation_due(self, keys: list[StoredKey], now: datetime) -> bool:
        signing = [k for k in keys if k.signs_at(now)]
        if not signing:
            return True
        if self.settings.signing_key_rotation_s <= 0:
            return False
        if any(k.not_before > now for k in keys):
            return False  # a successor is already published, waiting for its turn
        newest = max(k.not_before for k in signing)
        return now - newest >= timedelta(seconds=self.settings.signing_key_rotation_s)

    async def _add_key(self, session: AsyncSession, keys: list[StoredKey]) -> str:
        now = datetime.now(UTC)
        has_signer = any(k.signs_at(now) for k in keys)
        # The very first key signs at once (nobody holds tokens yet); a successor
        # waits until every cache has had the chance to fetch it.
        not_before = (
            now + timedelta(seconds=self.settings.key_publish_lead_s) if has_signer else now
        )
        private_key = Ed25519PrivateKey.generate()
        jwk = public_jwk(private_key)
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        await session.execute(
            update(signing_keys)
            .where(or_(signing_keys.c.retired_at.is_(None), signing_keys.c.retired_at > not_before))
            .values(retired_at=not_before)
        )
        await session.execute(
            insert(signing_keys).values(
                kid=jwk["kid"],
                algorithm=ALGORITHM,
                private_key_encrypted=self._box.encrypt(pem),
                public_jwk=jwk,
                not_before=not_before,
            )
        )
        return str(jwk["kid"])


class LocalVerifier(JWKSVerifier):
    """Verifies access tokens against the key ring directly (auth needs no HTTP to itself)."""

    def __init__(self, settings: Settings, keys: KeyRing) -> None:
        super().__init__(
            settings.auth_jwks_url, issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        self.keys = keys

    async def key_for(self, kid: str) -> PyJWK:
        key = await self.keys.public_key(kid)
        if key is None:
            raise Unauthorized("unknown signing key")
        return key
