"""Opaque keyset cursors: one codec for every list route.

``?limit=&cursor=`` → ``{"items": [...], "next_cursor": ...}``. A cursor is the
unpadded base64url of the JSON array ``[kind, *position]``: which list it belongs to,
then the last row's sort key (its timestamp and id, say), so pages stay stable while
rows are added. Each list declares its codec once, next to its query::

    DEPARTMENTS = keyset("departments", TIMESTAMP, ROW_ID)
    after = DEPARTMENTS.decode(cursor)                 # (datetime, UUID), or 422
    next_cursor = DEPARTMENTS.encode((last.created_at, last.id))

A malformed cursor, one of another list (its kind differs) and one from before the
kind was written (the bare ``[position...]`` arrays of 2026-12) are all refused with
422 ``invalid_input`` naming ``query.cursor``; the client starts again from the first
page. Cursors are positions, not credentials, so they are checked, not signed: a
hand-edited cursor that still decodes only moves where the caller's own list starts
(every list filters by organization, under row-level security too).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, cast, overload

from pytake_common.errors import InvalidInput

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
P = TypeVar("P", bound=tuple[Any, ...])

#: longer than any cursor we issue (template names are the longest keys)
MAX_CURSOR_LENGTH = 2048
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Part(Generic[T]):
    """One column of a sort key: how it is written into a cursor and read back.

    ``load`` raises ``ValueError`` or ``TypeError`` for a value it does not accept."""

    dump: Callable[[T], Any]
    load: Callable[[Any], T]


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise TypeError("not a string")
    return raw


def _timestamp(raw: Any) -> datetime:
    at = datetime.fromisoformat(_text(raw))
    if at.tzinfo is None:
        raise ValueError("naive timestamp")
    return at


def _number(raw: Any) -> int:
    if type(raw) is not int or raw < 0:  # not a bool, not negative
        raise ValueError("not a non-negative integer")
    return raw


TIMESTAMP: Part[datetime] = Part(datetime.isoformat, _timestamp)
ROW_ID: Part[uuid.UUID] = Part(str, lambda raw: uuid.UUID(_text(raw)))
NUMBER: Part[int] = Part(int, _number)
TEXT: Part[str] = Part(str, _text)


class Cursor(Generic[P]):
    """The cursors of one list: ``kind`` names the list, ``parts`` its sort key."""

    def __init__(self, kind: str, parts: tuple[Part[Any], ...]) -> None:
        self.kind = kind
        self.parts = parts

    def encode(self, position: P) -> str:
        values = [self.kind, *(p.dump(v) for p, v in zip(self.parts, position, strict=True))]
        raw = json.dumps(values, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode(self, cursor: str) -> P:
        """The position in ``cursor``; 422 if it is malformed or belongs to another list."""
        if len(cursor) > MAX_CURSOR_LENGTH or not _BASE64URL.fullmatch(cursor):
            raise _invalid("cursor is not valid")
        try:
            raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (binascii.Error, ValueError) as exc:
            raise _invalid("cursor is not valid") from exc
        if not isinstance(raw, list) or not raw or raw[0] != self.kind:
            raise _invalid("cursor belongs to another list (or an older release): start again")
        if len(raw) != 1 + len(self.parts):
            raise _invalid("cursor is not valid")
        try:
            return cast(P, tuple(p.load(v) for p, v in zip(self.parts, raw[1:], strict=True)))
        except (ValueError, TypeError) as exc:
            raise _invalid("cursor is not valid") from exc


def _invalid(detail: str) -> InvalidInput:
    return InvalidInput(
        detail, errors=[{"loc": ["query", "cursor"], "msg": detail, "type": "cursor"}]
    )


@overload
def keyset(kind: str, a: Part[A], /) -> Cursor[tuple[A]]: ...
@overload
def keyset(kind: str, a: Part[A], b: Part[B], /) -> Cursor[tuple[A, B]]: ...
@overload
def keyset(kind: str, a: Part[A], b: Part[B], c: Part[C], /) -> Cursor[tuple[A, B, C]]: ...
def keyset(kind: str, *parts: Part[Any]) -> Cursor[Any]:
    """The cursor codec of the list ``kind`` (unique within its service) sorted by ``parts``."""
    return Cursor(kind, parts)
