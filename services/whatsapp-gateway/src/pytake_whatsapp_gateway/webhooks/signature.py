"""``X-Hub-Signature-256``: HMAC-SHA256 of the Meta app secret over the raw body.

The secret belongs to a Meta *app*, and several numbers (and tenants) can share
one app. A delivery is authentic only when ONE secret verifies it and every
PyTake number it names is served by that secret (its own app secret, or the
platform's when it has none); otherwise a tenant owning an app could sign
messages for another tenant's number.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from dataclasses import dataclass

from pytake_common.crypto import SecretBox, SecretDecryptionError

log = logging.getLogger(__name__)

PREFIX = "sha256="


@dataclass(frozen=True, slots=True)
class KnownNumber:
    id: uuid.UUID
    organization_id: uuid.UUID
    phone_number_id: str
    waba_id: str
    display_phone_number: str
    app_secret_enc: str | None


def sign(secret: str, body: bytes) -> str:
    """The header value Meta would send for ``body`` (used by tests and tools)."""
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def parse_signature(header: str | None) -> bytes | None:
    """The 32-byte digest of a well-formed ``sha256=<hex>`` header, else None."""
    if not header or header[: len(PREFIX)].lower() != PREFIX:
        return None
    try:
        digest = bytes.fromhex(header[len(PREFIX) :].strip())
    except ValueError:
        return None
    return digest if len(digest) == hashlib.sha256().digest_size else None


class AppSecrets:
    """The app secret serving each number: its own (decrypted, memoised by ciphertext,
    so a busy number costs one decryption per process) or the platform's."""

    def __init__(self, box: SecretBox, platform_secret: str | None, size: int = 4096) -> None:
        self.box = box
        self.platform_secret = platform_secret
        self.size = size
        self._plain: dict[str, str] = {}

    def of(self, number: KnownNumber) -> str | None:
        """The secret, or None when it cannot be had (logged)."""
        enc = number.app_secret_enc
        if enc is None:
            if self.platform_secret is None:
                log.error(
                    "number has no app secret and no platform app secret is set",
                    extra={"number_id": str(number.id)},
                )
            return self.platform_secret
        plain = self._plain.get(enc)
        if plain is None:
            try:
                plain = self.box.decrypt(enc)
            except SecretDecryptionError:
                log.error(
                    "app secret of a number cannot be decrypted (secret key rotated away?)",
                    extra={"number_id": str(number.id)},
                )
                return None
            if len(self._plain) >= self.size:
                self._plain.pop(next(iter(self._plain)))
            self._plain[enc] = plain
        return plain

    def serving(self, numbers: list[KnownNumber]) -> str | None:
        """The one secret serving every number in ``numbers``; None when they have
        different apps (their deliveries are never signed together) or one is unusable."""
        secrets = {self.of(n) for n in numbers}
        if len(secrets) != 1:
            return None
        (secret,) = secrets
        return secret


def verifies(body: bytes, digest: bytes, secret: str) -> bool:
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return hmac.compare_digest(expected, digest)
