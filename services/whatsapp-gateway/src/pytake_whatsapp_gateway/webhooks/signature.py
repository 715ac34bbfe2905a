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


def is_authentic(
    body: bytes,
    digest: bytes,
    known: list[KnownNumber],
    box: SecretBox,
    platform_secret: str | None,
) -> bool:
    """True when one secret signed ``body`` and serves every number in ``known``."""
    secrets: set[str] = set()
    for number in known:
        if number.app_secret_enc is None:
            if platform_secret is None:
                log.error(
                    "number has no app secret and no platform app secret is set",
                    extra={"number_id": str(number.id)},
                )
                return False
            secrets.add(platform_secret)
            continue
        try:
            secrets.add(box.decrypt(number.app_secret_enc))
        except SecretDecryptionError:
            log.error(
                "app secret of a number cannot be decrypted (secret key rotated away?)",
                extra={"number_id": str(number.id)},
            )
            return False
    if len(secrets) != 1:
        return False  # numbers of different Meta apps never share one signed delivery
    (secret,) = secrets
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return hmac.compare_digest(expected, digest)
