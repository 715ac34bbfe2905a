"""Business-time arithmetic for SLA targets: pure functions, no I/O.

A :class:`Schedule` is an organization's opening hours in its own time zone (weekly
intervals and closed holiday dates). Time counts only while open:

- :func:`add_business_minutes` — the moment ``minutes`` of open time after ``start``;
- :func:`business_minutes_between` — open minutes in ``[start, end)``.

Intervals are local wall-clock times converted to UTC day by day, so a daylight-saving
change shortens or lengthens that day's opening as a clock on the wall would. A schedule
with no opening at all counts every minute (an organization that never set its hours is
treated as always open, not as never reaching a due time).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
#: how far ahead an opening is looked for before giving up (a year of holidays)
HORIZON_DAYS = 400


@dataclass(frozen=True, slots=True)
class Schedule:
    """Opening hours: per weekday (0 = Monday) sorted, non-overlapping ``(start, end)``
    local times; ``end`` of ``time.max`` or ``time(0)`` reads as midnight."""

    zone: ZoneInfo
    week: Mapping[int, Sequence[tuple[time, time]]]
    holidays: frozenset[date] = field(default_factory=frozenset)

    @property
    def always_open(self) -> bool:
        return not any(self.week.get(day) for day in range(7))

    @classmethod
    def of(
        cls,
        timezone: str,
        business_hours: Mapping[str, Sequence[Mapping[str, str]]],
        holidays: Sequence[str | date] = (),
    ) -> Schedule:
        """From the organization settings' shape: ``{"monday": [{"start": "09:00",
        "end": "18:00"}], ...}`` and ISO dates."""
        week = {
            index: sorted(
                (time.fromisoformat(span["start"]), time.fromisoformat(span["end"]))
                for span in business_hours.get(day) or ()
            )
            for index, day in enumerate(WEEKDAYS)
        }
        days = frozenset(d if isinstance(d, date) else date.fromisoformat(d) for d in holidays)
        return cls(ZoneInfo(timezone), week, days)


def _local(day: date, at: time, zone: ZoneInfo, *, end: bool = False) -> datetime:
    if end and at in (time(0), time.max):  # an interval ending at midnight
        return datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
    return datetime.combine(day, at, zone).astimezone(UTC)


def open_spans(schedule: Schedule, start: datetime) -> Iterator[tuple[datetime, datetime]]:
    """The open periods (UTC, in order) that end after ``start``, clipped to it."""
    if schedule.always_open:
        yield start, datetime.max.replace(tzinfo=UTC)
        return
    day = start.astimezone(schedule.zone).date() - timedelta(days=1)
    for _ in range(HORIZON_DAYS):
        if day not in schedule.holidays:
            for begin, end in schedule.week.get(day.weekday(), ()):
                span_start, span_end = (
                    _local(day, begin, schedule.zone),
                    _local(day, end, schedule.zone, end=True),
                )
                if span_end > start and span_end > span_start:
                    yield max(span_start, start), span_end
        day += timedelta(days=1)


class NeverOpen(ValueError):
    """No opening within the horizon: the schedule cannot count business time."""


def add_business_minutes(schedule: Schedule, start: datetime, minutes: float) -> datetime:
    """The moment ``minutes`` of open time have passed since ``start`` (aware, UTC).

    Zero minutes from a closed moment is the next opening (the clock starts there)."""
    remaining = timedelta(minutes=minutes)
    for span_start, span_end in open_spans(schedule, start.astimezone(UTC)):
        if span_start + remaining <= span_end:
            return span_start + remaining
        remaining -= span_end - span_start
    raise NeverOpen(f"no opening within {HORIZON_DAYS} days")


def business_minutes_between(schedule: Schedule, start: datetime, end: datetime) -> float:
    """Open minutes in ``[start, end)``; 0 when ``end`` is not after ``start``."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    total = timedelta()
    if end <= start:
        return 0.0
    for span_start, span_end in open_spans(schedule, start):
        if span_start >= end:
            break
        total += min(span_end, end) - span_start
    return total.total_seconds() / 60
