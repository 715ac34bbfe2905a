"""``PyTake-Signature: t=<unix>,v1=<hex>[,v1=<hex>]``: HMAC-SHA256(secret, "<t>.<body>").

During a secret rotation's overlap both secrets sign (one ``v1`` each, newest first), so
a receiver holding either secret accepts the delivery. :func:`verify` is the reference
receiver's side, as shown in ``docs/webhooks.md``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence

HEADER = "PyTake-Signature"
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(body: bytes, secrets_: Sequence[str], timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + body
    parts = [f"t={timestamp}"]
    parts += ["v1=" + hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in secrets_]
    return ",".join(parts)


def verify(
    body: bytes, header: str, secret: str, tolerance_s: int = 300, now: float | None = None
) -> bool:
    """True when one ``v1`` of ``header`` is ``secret``'s and ``t`` is recent."""
    fields = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in fields if k == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    if abs((time.time() if now is None else now) - int(stamps[0])) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{stamps[0]}.".encode() + body, hashlib.sha256)
    return any(hmac.compare_digest(expected.hexdigest(), v) for k, v in fields if k == "v1")
