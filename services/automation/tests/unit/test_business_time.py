"""Business-time arithmetic of SLA targets (pure): business_hours' add and between."""

from datetime import UTC, date, datetime, timedelta

import pytest

from pytake_automation.business_hours import (
    NeverOpen,
    add_business_minutes,
    business_minutes_between,
    schedule_of,
)

NINE_TO_SIX = [{"start": "09:00", "end": "18:00"}]
WEEKDAYS_9_18 = {d: NINE_TO_SIX for d in ("monday", "tuesday", "wednesday", "thursday", "friday")}
SAO_PAULO = schedule_of(
    {"timezone": "America/Sao_Paulo", "business_hours": WEEKDAYS_9_18}
)  # UTC-3, no DST since 2019


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_inside_opening_hours_it_is_plain_addition():
    # Wednesday 2026-12-02 10:00 local = 13:00 UTC
    start = utc(2026, 12, 2, 13, 0)
    assert add_business_minutes(SAO_PAULO, start, 60) == utc(2026, 12, 2, 14, 0)
    assert business_minutes_between(SAO_PAULO, start, utc(2026, 12, 2, 14, 0)) == 60


def test_time_after_closing_continues_at_the_next_opening():
    # Wednesday 17:30 local + 60 business minutes = Thursday 09:30 local
    start = utc(2026, 12, 2, 20, 30)
    due = add_business_minutes(SAO_PAULO, start, 60)
    assert due == utc(2026, 12, 3, 12, 30)
    assert business_minutes_between(SAO_PAULO, start, due) == 60


def test_a_weekend_is_skipped_and_a_closed_start_waits_for_the_opening():
    # Saturday 2026-12-05 noon local: nothing counts until Monday 09:00 local
    saturday = utc(2026, 12, 5, 15, 0)
    assert add_business_minutes(SAO_PAULO, saturday, 0) == utc(2026, 12, 7, 12, 0)
    assert add_business_minutes(SAO_PAULO, saturday, 15) == utc(2026, 12, 7, 12, 15)
    assert business_minutes_between(SAO_PAULO, saturday, utc(2026, 12, 7, 12, 0)) == 0
    # Friday 17:00 local + 2 business hours = Monday 10:00 local
    assert add_business_minutes(SAO_PAULO, utc(2026, 12, 4, 20, 0), 120) == utc(2026, 12, 7, 13, 0)


def test_holidays_are_closed_all_day():
    schedule = schedule_of(
        {
            "timezone": "America/Sao_Paulo",
            "business_hours": WEEKDAYS_9_18,
            "holidays": [{"date": "2026-12-25", "name": "Christmas"}],
        }
    )
    # Thursday 24th 17:00 local + 2 h: 1 h that day, Friday 25th closed, Monday 28th 10:00
    due = add_business_minutes(schedule, utc(2026, 12, 24, 20, 0), 120)
    assert due == utc(2026, 12, 28, 13, 0)
    assert schedule.holidays == frozenset({date(2026, 12, 25)})


def test_several_intervals_a_day_and_a_lunch_break():
    split = schedule_of(
        {
            "business_hours": {
                "monday": [{"start": "13:00", "end": "17:00"}, {"start": "08:00", "end": "12:00"}]
            }
        }
    )
    monday = utc(2026, 12, 7, 11, 0)
    assert add_business_minutes(split, monday, 90) == utc(2026, 12, 7, 13, 30)
    assert business_minutes_between(split, monday, utc(2026, 12, 7, 18, 0)) == 300
    # next Monday after the day's last hour
    assert add_business_minutes(split, utc(2026, 12, 7, 16, 30), 60) == utc(2026, 12, 14, 8, 30)


def test_daylight_saving_follows_the_wall_clock():
    # New York switches to EDT on Sunday 2027-03-14: 09:00 local is 14:00 UTC before, 13:00 after
    ny = schedule_of({"timezone": "America/New_York", "business_hours": WEEKDAYS_9_18})
    friday_close = utc(2027, 3, 12, 23, 0)  # Friday 18:00 EST
    assert add_business_minutes(ny, friday_close - timedelta(minutes=30), 60) == utc(
        2027, 3, 15, 13, 30
    )


def test_no_hours_set_counts_every_minute_and_an_always_closed_week_cannot_count():
    always = schedule_of({})
    start = utc(2026, 12, 5, 3, 0)
    assert add_business_minutes(always, start, 600) == start + timedelta(minutes=600)
    assert business_minutes_between(always, start, start + timedelta(hours=2)) == 120
    mondays = [(date(2026, 12, 7) + timedelta(days=7 * i)).isoformat() for i in range(60)]
    everything_holiday = schedule_of(
        {"business_hours": {"monday": NINE_TO_SIX}, "holidays": mondays}
    )
    with pytest.raises(NeverOpen):
        add_business_minutes(everything_holiday, start, 1)


def test_between_is_zero_for_an_empty_or_reversed_range_and_inverts_add():
    start = utc(2026, 12, 2, 13, 0)
    assert business_minutes_between(SAO_PAULO, start, start) == 0
    assert business_minutes_between(SAO_PAULO, start, start - timedelta(hours=1)) == 0
    for minutes in (1, 59, 540, 541, 2000, 9000):
        due = add_business_minutes(SAO_PAULO, start, minutes)
        assert business_minutes_between(SAO_PAULO, start, due) == pytest.approx(minutes)


def test_an_interval_ending_at_midnight():
    late = schedule_of(
        {"business_hours": {"friday": [{"start": "20:00", "end": "23:59:59.999999"}]}}
    )
    assert add_business_minutes(late, utc(2026, 12, 4, 23, 30), 30) == utc(2026, 12, 5, 0, 0)
    night = schedule_of({"business_hours": {"saturday": [{"start": "00:00", "end": "06:00"}]}})
    assert add_business_minutes(night, utc(2026, 12, 4, 23, 0), 60) == utc(2026, 12, 5, 1, 0)
