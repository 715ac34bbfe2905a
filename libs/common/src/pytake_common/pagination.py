"""Opaque keyset cursors shared by every list route.

``?limit=&cursor=`` → ``{"items": [...], "next_cursor": ...}``; a cursor encodes the
last row's (timestamp, id) so pages stay stable while rows are added.
"""

import base64
import json
import uuid
from datetime import datetime

from pytake_common.errors import InvalidInput


def encode_cursor(at: datetime, row_id: uuid.UUID | int) -> str:
    raw = json.dumps([at.isoformat(), str(row_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, row_id = json.loads(raw)
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None:
            raise ValueError("naive timestamp")
        return parsed, str(row_id)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("cursor is not valid") from exc


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    at, row_id = _decode(cursor)
    try:
        return at, uuid.UUID(row_id)
    except ValueError as exc:
        raise InvalidInput("cursor is not valid") from exc


def decode_int_cursor(cursor: str) -> int:
    _, row_id = _decode(cursor)
    if not row_id.isdigit():
        raise InvalidInput("cursor is not valid")
    return int(row_id)
