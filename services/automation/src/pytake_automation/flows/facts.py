"""What a flow may know of a contact and its organization, read from the local replicas."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation.business_hours import schedule_of
from pytake_automation.flows.session import Facts
from pytake_automation.tables import contacts, organizations, tags


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
    if row is None:
        return await facts_with(session, org, None, {}, (), business_open=business_open, at=at)
    return await facts_with(
        session, org, row.name, row.attributes, row.tag_ids, business_open=business_open, at=at
    )


async def facts_with(
    session: AsyncSession,
    org: uuid.UUID,
    name: str | None,
    attributes: Mapping[str, Any] | None,
    tag_ids: Iterable[uuid.UUID] | None,
    *,
    business_open: bool | None = None,
    at: datetime | None = None,
) -> Facts:
    """The facts of a contact the caller has read already (its name, attributes, tag ids):
    only the tags' names are read (when it has tags), and business hours when not given."""
    ids = list(tag_ids or [])
    labels = {str(i) for i in ids}
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
        business_open = schedule_of(settings or {}).is_open(at or datetime.now(UTC))
    return Facts(
        contact_name=name,
        attributes={str(k): _text(v) for k, v in (attributes or {}).items()},
        tags=frozenset(labels),
        business_hours_open=business_open,
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
