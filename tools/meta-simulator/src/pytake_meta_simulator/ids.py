"""Identifiers shaped like Meta's."""

from __future__ import annotations

import base64
import re
import secrets

_PHONE_CHARS = re.compile(r"^[+\d\s().-]+$")


def new_wamid(wa_id: str) -> str:
    """Return a message id shaped like Meta's: ``wamid.`` + standard base64.

    Real wamids are base64 of a small protobuf carrying the user's id and a random
    hex id, so they contain ``+``, ``/`` and ``=`` padding; receivers must treat
    them as opaque strings.
    """
    user = wa_id.encode()[:64]
    rand = secrets.token_hex(10).upper().encode()
    raw = b"\x1c\x18" + bytes([len(user)]) + user + b"\x15\x02\x00\x11\x18"
    raw += bytes([len(rand)]) + rand + b"\x00"
    return "wamid." + base64.b64encode(raw).decode()


def new_fbtrace_id() -> str:
    return "A" + secrets.token_urlsafe(16)[:22]


def new_media_id() -> str:
    """Media ids are numeric strings of 15-16 digits."""
    return str(10**15 + secrets.randbelow(9 * 10**15))


def new_conversation_id() -> str:
    return secrets.token_hex(16)


def normalize_wa_id(to: str) -> str:
    """Meta answers with the recipient's wa_id: the phone number's digits only.

    Anything that does not look like a phone number (a business-scoped user id)
    is returned unchanged.
    """
    if _PHONE_CHARS.match(to):
        return re.sub(r"\D", "", to)
    return to
