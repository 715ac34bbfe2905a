"""Queries shared by the API and the consumers (they never commit: callers own transactions)."""

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.errors import NotFound
from pytake_contacts.domain import AttributeDefinition
from pytake_contacts.tables import (
    attribute_definitions,
    contact_interactions,
    contact_tags,
    contacts,
    tags,
)

Row = RowMapping


async def record_interaction(
    session: AsyncSession,
    org: uuid.UUID,
    contact_id: uuid.UUID,
    kind: str,
    at: datetime,
    fact_key: str,
    data: dict[str, Any] | None = None,
) -> None:
    """Add a fact to the contact's timeline once (``fact_key`` dedupes redeliveries)."""
    await session.execute(
        pg_insert(contact_interactions)
        .values(
            id=uuid.uuid4(),
            organization_id=org,
            contact_id=contact_id,
            kind=kind,
            occurred_at=at,
            fact_key=fact_key[:200],
            data=data or {},
        )
        .on_conflict_do_nothing()
    )


async def load_contact(
    session: AsyncSession,
    org: uuid.UUID,
    contact_id: uuid.UUID,
    *,
    lock: bool = False,
) -> Row:
    """The live (not deleted) contact, or NotFound — also for another organization's id."""
    stmt = select(contacts).where(
        contacts.c.id == contact_id,
        contacts.c.organization_id == org,
        contacts.c.deleted_at.is_(None),
    )
    if lock:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).mappings().first()
    if row is None:
        raise NotFound("contact not found")
    return row


async def set_values(
    session: AsyncSession, org: uuid.UUID, contact_id: uuid.UUID, **values: Any
) -> None:
    """Store ``values`` on the contact (and move its ``updated_at`` on)."""
    await session.execute(
        update(contacts)
        .where(contacts.c.id == contact_id, contacts.c.organization_id == org)
        .values(**values, updated_at=func.now())
    )


async def now(session: AsyncSession) -> datetime:
    """The transaction's time (PostgreSQL's ``now()``)."""
    at: datetime | None = await session.scalar(select(func.now()))
    assert at is not None
    return at


async def live_count(session: AsyncSession, org: uuid.UUID) -> int:
    """How many contacts the organization has (not deleted)."""
    count = await session.scalar(
        select(func.count())
        .select_from(contacts)
        .where(contacts.c.organization_id == org, contacts.c.deleted_at.is_(None))
    )
    return int(count or 0)


async def load_tag(session: AsyncSession, org: uuid.UUID, tag_id: uuid.UUID) -> Row:
    row = (
        (
            await session.execute(
                select(tags).where(tags.c.id == tag_id, tags.c.organization_id == org)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound("tag not found")
    return row


async def tags_of(
    session: AsyncSession, org: uuid.UUID, contact_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    ids = list(contact_ids)
    found: dict[uuid.UUID, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return found
    rows = await session.execute(
        select(contact_tags.c.contact_id, tags.c.id, tags.c.name, tags.c.color)
        .join(tags, tags.c.id == contact_tags.c.tag_id)
        .where(contact_tags.c.organization_id == org, contact_tags.c.contact_id.in_(ids))
        .order_by(func.lower(tags.c.name))
    )
    for contact_id, tag_id, name, color in rows:
        found[contact_id].append({"id": tag_id, "name": name, "color": color})
    return found


async def attribute_schema(session: AsyncSession, org: uuid.UUID) -> dict[str, AttributeDefinition]:
    rows = await session.execute(
        select(
            attribute_definitions.c.key,
            attribute_definitions.c.type,
            attribute_definitions.c.allowed_values,
        ).where(attribute_definitions.c.organization_id == org)
    )
    return {key: AttributeDefinition(key, kind, allowed) for key, kind, allowed in rows}
