"""What a flow may know of a contact and its organization, read from the local replicas."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation.flows.session import Facts
from pytake_automation.tables import contacts, organizations, tags

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


async def facts_of(
    session: AsyncSession,
    org: uuid.UUID,
    contact_id: uuid.UUID,
    *,
    business_open: bool | None = None,
    at: datetime | None = None,
) -> Facts:
    """The contact's name, attributes and tags (names and ids); business hours from the
    caller when it knows them, else from the organization's settings replica at ``at``."""
    row = (
        await session.execute(
            select(contacts.c.name, contacts.c.attributes, contacts.c.tag_ids).where(
                contacts.c.id == contact_id, contacts.c.organization_id == org
            )
        )
    ).one_or_none()
    labels: set[str] = set()
    attributes: dict[str, str] = {}
    name = None
    if row is not None:
        name = row.name
        attributes = {str(k): _text(v) for k, v in (row.attributes or {}).items()}
        ids = list(row.tag_ids or [])
        labels |= {str(i) for i in ids}
        if ids:
            names = await session.execute(
                select(tags.c.name).where(
                    tags.c.organization_id == org, tags.c.id.in_(ids), tags.c.deleted.is_(False)
                )
            )
            labels |= set(names.scalars())
    if business_open is None:
        settings = (
            await session.execute(
                select(organizations.c.settings).where(organizations.c.organization_id == org)
            )
        ).scalar_one_or_none()
        business_open = open_at(settings or {}, at or datetime.now().astimezone())
    return Facts(
        contact_name=name,
        attributes=attributes,
        tags=frozenset(labels),
        business_hours_open=business_open,
    )


def open_at(settings: dict[str, Any], at: datetime) -> bool:
    """Open by the organization's weekly hours in its time zone, closed on its holidays.

    No business hours configured at all counts as always open (nothing to honour)."""
    hours = settings.get("business_hours")
    if not isinstance(hours, dict) or not any(hours.get(day) for day in WEEKDAYS):
        return True
    try:
        zone = ZoneInfo(str(settings.get("timezone") or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = at.astimezone(zone)
    if local.date().isoformat() in {_day(h) for h in settings.get("holidays") or []}:
        return False
    now = local.time().replace(tzinfo=None)
    for span in hours.get(WEEKDAYS[local.weekday()]) or []:
        try:
            start, end = time.fromisoformat(span["start"]), time.fromisoformat(span["end"])
        except (KeyError, TypeError, ValueError):
            continue
        if start <= now < end:
            return True
    return False


def _day(holiday: Any) -> str:
    """Holidays as ``YYYY-MM-DD`` or ``{date: YYYY-MM-DD, ...}``."""
    value = holiday.get("date") if isinstance(holiday, dict) else holiday
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        return ""


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
