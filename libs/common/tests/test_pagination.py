"""The one cursor codec: round trips, the wire format, and what it refuses (422)."""

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pytake_common.errors import InvalidInput
from pytake_common.pagination import NUMBER, ROW_ID, TEXT, TIMESTAMP, keyset

AT = datetime(2026, 12, 5, 9, 54, 27, 123456, tzinfo=UTC)
ID = uuid.UUID("3b1f6c1e-8d8c-4c53-9d1a-0f6f3f0e9a11")
DEPARTMENTS = keyset("departments", TIMESTAMP, ROW_ID)
NUMBERS = keyset("numbers", TIMESTAMP, ROW_ID)
TEMPLATES = keyset("templates", TEXT, TEXT)
AUDIT = keyset("audit", NUMBER)
CONTACTS = keyset("contacts", NUMBER, TIMESTAMP, ROW_ID)


def _raw(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _refused(codec, cursor: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as refused:
        codec.decode(cursor)
    assert refused.value.status == 422
    assert refused.value.extra["errors"][0]["loc"] == ["query", "cursor"]
    return refused.value


def test_positions_round_trip():
    assert DEPARTMENTS.decode(DEPARTMENTS.encode((AT, ID))) == (AT, ID)
    assert TEMPLATES.decode(TEMPLATES.encode(("order_update", "pt_BR"))) == (
        "order_update",
        "pt_BR",
    )
    assert AUDIT.decode(AUDIT.encode((42,))) == (42,)
    assert CONTACTS.decode(CONTACTS.encode((3, AT, ID))) == (3, AT, ID)
    brasilia = AT.astimezone(timezone(timedelta(hours=-3)))
    assert DEPARTMENTS.decode(DEPARTMENTS.encode((brasilia, ID))) == (AT, ID)


def test_the_wire_format_is_unpadded_base64url_json_of_kind_then_position():
    cursor = DEPARTMENTS.encode((AT, ID))
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor
    decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert decoded == ["departments", AT.isoformat(), str(ID)]
    # short enough for the lists that cap ?cursor= at 200 characters
    assert len(keyset("organizations", TIMESTAMP, ROW_ID).encode((AT, ID))) < 200


def test_a_cursor_of_another_list_is_refused():
    other = NUMBERS.encode((AT, ID))
    assert "another list" in _refused(DEPARTMENTS, other).detail


def test_a_cursor_from_before_the_kind_was_written_is_refused():
    """The codecs of 2026-12 wrote bare positions; such a cursor starts over, not misreads."""
    assert "another list" in _refused(DEPARTMENTS, _raw([AT.isoformat(), str(ID)])).detail
    assert "another list" in _refused(TEMPLATES, _raw(["order_update", "pt_BR"])).detail


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "garbage!",  # not base64url
        "bm90IGEgY3Vyc29y",  # base64 of "not a cursor"
        "a" * 3000,  # longer than any cursor
        "eyJ",  # truncated JSON
        "6",  # not a whole base64 quantum
        _raw({"departments": [AT.isoformat(), str(ID)]}),
        _raw("departments"),
        _raw([]),
        _raw(["departments", AT.isoformat()]),  # too short
        _raw(["departments", AT.isoformat(), str(ID), 1]),  # too long
        _raw(["departments", "yesterday", str(ID)]),
        _raw(["departments", "2026-12-05T09:54:27", str(ID)]),  # no zone: ambiguous
        _raw(["departments", AT.isoformat(), "not-a-uuid"]),
        _raw(["departments", 1733392467, str(ID)]),
        _raw(["departments", AT.isoformat(), None]),
    ],
)
def test_a_malformed_or_tampered_cursor_is_refused(cursor):
    _refused(DEPARTMENTS, cursor)


@pytest.mark.parametrize("rank", [-1, True, 1.5, "2", None])
def test_numbers_must_be_non_negative_integers(rank):
    _refused(CONTACTS, _raw(["contacts", rank, AT.isoformat(), str(ID)]))
    _refused(AUDIT, _raw(["audit", rank]))


def test_texts_must_be_strings():
    _refused(TEMPLATES, _raw(["templates", "order_update", 7]))
    _refused(TEMPLATES, _raw(["templates", ["order_update"], "pt_BR"]))


def test_encoding_checks_the_position_has_every_part():
    with pytest.raises(ValueError):
        DEPARTMENTS.encode((AT,))  # type: ignore[arg-type]
