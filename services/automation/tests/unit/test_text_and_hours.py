"""Keyword normalisation and business-hours arithmetic (pure, no database)."""

from datetime import UTC, datetime

import pytest

from pytake_automation.business_hours import schedule_of
from pytake_automation.text_match import contains_any, normalize, phrase_key


@pytest.mark.parametrize(
    ("text", "phrase", "hit"),
    [
        ("Olá, tudo bem?", "ola", True),
        ("OLÁ!!!", "olá", True),
        ("quero colar isso", "ola", False),  # whole words only
        ("Quero CANCELAR meu plano", "cancelar meu plano", True),
        ("cancelar o meu plano", "cancelar meu plano", False),  # words adjacent, in order
        ("preço?", "PRECO", True),
        ("Straße", "strasse", True),  # casefold
        ("ﬁnal", "final", True),  # NFKD ligature
        ("naïve café", "naive cafe", True),
        ("", "oi", False),
    ],
)
def test_phrases(text, phrase, hit):
    key = phrase_key(phrase)
    assert key is not None
    assert contains_any(normalize(text), (key,)) is hit


def test_phrase_without_letters_is_refused():
    assert phrase_key("!!! ...") is None
    assert normalize("  ...  ") == " "


SETTINGS = {
    "timezone": "America/Sao_Paulo",  # UTC-3, no DST since 2019
    "business_hours": {
        "monday": [{"start": "09:00:00", "end": "12:00:00"}, {"start": "13:00", "end": "18:00"}],
        "saturday": [{"start": "09:00", "end": "13:00"}],
    },
    "holidays": [{"date": "2026-12-25", "name": "Natal"}, "2027-01-01", {"date": "bad"}],
}


@pytest.mark.parametrize(
    ("utc", "open_"),
    [
        ("2026-12-07T12:00:00", True),  # Mon 09:00 local: start included
        ("2026-12-07T11:59:59", False),  # Mon 08:59:59
        ("2026-12-07T15:30:00", False),  # Mon 12:30 lunch
        ("2026-12-07T20:59:59", True),  # Mon 17:59:59
        ("2026-12-07T21:00:00", False),  # Mon 18:00: end excluded
        ("2026-12-08T13:00:00", False),  # Tuesday: no hours
        ("2026-12-12T13:00:00", True),  # Saturday 10:00
        ("2026-12-13T02:00:00", False),  # Sat 23:00 local (Sunday in UTC)
        ("2026-12-21T02:30:00", False),  # Sunday 23:30 local, Monday in UTC
    ],
)
def test_weekly_hours_in_the_local_zone(utc, open_):
    at = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    assert schedule_of(SETTINGS).is_open(at) is open_


def test_holiday_closes_the_local_day():
    s = schedule_of(
        {**SETTINGS, "business_hours": {"friday": [{"start": "00:00", "end": "23:59"}]}}
    )
    assert s.is_open(datetime(2026, 12, 18, 15, tzinfo=UTC))  # an ordinary Friday
    assert not s.is_open(datetime(2026, 12, 25, 15, tzinfo=UTC))  # Christmas, a Friday
    # 2026-12-26 01:00 UTC is still the 25th in São Paulo (22:00): closed
    assert not s.is_open(datetime(2026, 12, 26, 1, tzinfo=UTC))


def test_dst_follows_the_wall_clock():
    s = schedule_of(
        {
            "timezone": "Europe/Lisbon",
            "business_hours": {"monday": [{"start": "09:00", "end": "10:00"}]},
        }
    )
    assert s.is_open(datetime(2027, 1, 4, 9, 30, tzinfo=UTC))  # winter: UTC+0
    assert not s.is_open(datetime(2027, 7, 5, 9, 30, tzinfo=UTC))  # summer: 10:30 local
    assert s.is_open(datetime(2027, 7, 5, 8, 30, tzinfo=UTC))


def test_nothing_configured_is_always_open_and_bad_zone_is_utc():
    assert schedule_of({}).is_open(datetime(2026, 12, 25, 3, tzinfo=UTC))
    s = schedule_of(
        {
            "timezone": "Mars/Olympus",
            "business_hours": {"monday": [{"start": "09:00", "end": "10:00"}]},
        }
    )
    assert s.is_open(datetime(2026, 12, 7, 9, 30, tzinfo=UTC))
