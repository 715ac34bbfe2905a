"""Is the organization open at an instant: its time zone, weekly hours and holidays.

Also business-time arithmetic for SLA targets (:func:`add_business_minutes`,
:func:`business_minutes_between`): time counts only while open, and an organization without
hours counts every minute.

Read from tenants' settings (``timezone``, ``business_hours`` per weekday as ``HH:MM[:SS]``
intervals, ``holidays`` as ``[{date: YYYY-MM-DD, name?}]``). An organization that set no
hours at all (every day empty, tenants' default) is treated as always open: nothing
configured, nothing away. A holiday closes the whole local day. Intervals are half-open,
``[start, end)``, in local wall-clock time, so a DST change moves the instants with the
clock as people expect.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
UTC_ZONE = ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class Schedule:
    zone: ZoneInfo
    #: weekday (Monday 0) -> sorted intervals
    week: tuple[tuple[tuple[time, time], ...], ...]
    holidays: frozenset[date]

    @property
    def configured(self) -> bool:
        return any(self.week)

    def is_open(self, at: datetime) -> bool:
        if not self.configured:
            return True
        local = at.astimezone(self.zone)
        if local.date() in self.holidays:
            return False
        now = local.time().replace(tzinfo=None)
        return any(start <= now < end for start, end in self.week[local.weekday()])


def _time(value: Any) -> time:
    return value if isinstance(value, time) else time.fromisoformat(str(value))


def _zone(name: Any) -> ZoneInfo:
    try:
        return ZoneInfo(str(name)) if name else UTC_ZONE
    except (ZoneInfoNotFoundError, ValueError):
        return UTC_ZONE  # tenants validates names; an unknown one here is a newer tzdata's


def _holiday(item: Any) -> date | None:
    raw = item.get("date") if isinstance(item, dict) else item
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        return None


def schedule_of(settings: dict[str, Any]) -> Schedule:
    """The schedule in tenants' settings document (tolerant: what it cannot read is absent)."""
    hours = settings.get("business_hours") or {}
    week = tuple(
        tuple(
            sorted(
                (_time(i["start"]), _time(i["end"]))
                for i in (hours.get(day) or [])
                if isinstance(i, dict) and "start" in i and "end" in i
            )
        )
        for day in WEEKDAYS
    )
    holidays = frozenset(
        d for d in (_holiday(h) for h in settings.get("holidays") or []) if d is not None
    )
    return Schedule(_zone(settings.get("timezone")), week, holidays)


# --- business-time arithmetic (SLA targets) ---------------------------------------------------

#: how far ahead an opening is looked for before giving up (a year of holidays)
HORIZON_DAYS = 400


class NeverOpen(ValueError):
    """No opening within the horizon: the schedule cannot count business time."""


def _instant(day: date, at: time, zone: ZoneInfo, *, end: bool = False) -> datetime:
    if end and at == time.max:  # an interval written to end at midnight
        return datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
    return datetime.combine(day, at, zone).astimezone(UTC)


def open_spans(schedule: Schedule, start: datetime) -> Iterator[tuple[datetime, datetime]]:
    """The open periods (UTC, in order) that end after ``start``, clipped to it.

    Local wall-clock intervals become instants day by day, so a daylight-saving change
    shortens or lengthens that day's opening as a clock on the wall would."""
    if not schedule.configured:
        yield start, datetime.max.replace(tzinfo=UTC)
        return
    day = start.astimezone(schedule.zone).date() - timedelta(days=1)
    for _ in range(HORIZON_DAYS):
        if day not in schedule.holidays:
            for begin, finish in schedule.week[day.weekday()]:
                span_start = _instant(day, begin, schedule.zone)
                span_end = _instant(day, finish, schedule.zone, end=True)
                if span_end > start and span_end > span_start:
                    yield max(span_start, start), span_end
        day += timedelta(days=1)


def add_business_minutes(schedule: Schedule, start: datetime, minutes: float) -> datetime:
    """The instant ``minutes`` of open time after ``start`` (UTC). Zero minutes from a
    closed instant is the next opening: the clock starts there."""
    remaining = timedelta(minutes=minutes)
    for span_start, span_end in open_spans(schedule, start.astimezone(UTC)):
        if span_start + remaining <= span_end:
            return span_start + remaining
        remaining -= span_end - span_start
    raise NeverOpen(f"no opening within {HORIZON_DAYS} days")


def business_minutes_between(schedule: Schedule, start: datetime, end: datetime) -> float:
    """Open minutes in ``[start, end)``; 0 when ``end`` is not after ``start``."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return 0.0
    total = timedelta()
    for span_start, span_end in open_spans(schedule, start):
        if span_start >= end:
            break
        total += min(span_end, end) - span_start
    return total.total_seconds() / 60
