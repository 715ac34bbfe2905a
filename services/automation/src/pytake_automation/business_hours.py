"""Is the organization open at an instant: its time zone, weekly hours and holidays.

Read from tenants' settings (``timezone``, ``business_hours`` per weekday as ``HH:MM[:SS]``
intervals, ``holidays`` as ``[{date: YYYY-MM-DD, name?}]``). An organization that set no
hours at all (every day empty, tenants' default) is treated as always open: nothing
configured, nothing away. A holiday closes the whole local day. Intervals are half-open,
``[start, end)``, in local wall-clock time, so a DST change moves the instants with the
clock as people expect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
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
