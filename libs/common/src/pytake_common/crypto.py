"""Encryption of secrets at rest (WhatsApp tokens, app secrets, signing keys).

Fernet (AES-128-CBC + HMAC-SHA256) from ``cryptography``, keyed by HKDF over
``PYTAKE_SECRET_KEY``. Rotation: put the new key first and the old ones after it,
comma-separated; new values are encrypted with the first, every listed key
decrypts, and :meth:`SecretBox.rotate` re-encrypts a stored value.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretDecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


def _fernet(secret: str, purpose: str) -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"pytake:{purpose}".encode()
    ).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


class SecretBox:
    def __init__(self, secret_keys: str, purpose: str = "secrets-at-rest") -> None:
        keys = [k.strip() for k in secret_keys.split(",") if k.strip()]
        if not keys:
            raise ValueError("no secret key configured")
        self._box = MultiFernet([_fernet(k, purpose) for k in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._box.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._box.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretDecryptionError(
                "secret cannot be decrypted with the configured keys"
            ) from exc

    def rotate(self, token: str) -> str:
        return self._box.rotate(token.encode()).decode()
