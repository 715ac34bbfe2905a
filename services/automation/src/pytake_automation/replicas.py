"""Replicas of what rules look at, kept from the owners' events (tolerant readers).

- tenants: organization settings (timezone, business hours, holidays, automatic messages,
  auto-resolve) and departments (names; routing stays conversations' business);
- contacts: name, blocked/erased, tag ids, custom attributes; tags' names.

Conversations are replicated in :mod:`pytake_automation.conversation_state`, beside the
triggers they feed. Handlers are idempotent and order-tolerant: a row remembers the time
of the newest event applied (``version_at``) and an older one arriving late changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, func, literal, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation.tables import contacts, departments, organizations, tags
from pytake_common import event_types as et
from pytake_common.consumer import Handler
from pytake_common.events import CloudEvent, TenantEventData

#: version of a row created by an event that carries only part of it (a tag before the
#: contact's creation): any event with the whole state wins over it
NEVER = datetime(1970, 1, 1, tzinfo=UTC)


class OrganizationFacts(TenantEventData):
    organization_id: uuid.UUID
    settings: dict[str, Any] | None = None


class DepartmentFacts(TenantEventData):
    department_id: uuid.UUID
    organization_id: uuid.UUID
    name: str = ""


class ContactFacts(TenantEventData):
    contact_id: uuid.UUID
    organization_id: uuid.UUID
    name: str | None = None
    attributes: dict[str, Any] | None = None


class ContactTagFacts(TenantEventData):
    contact_id: uuid.UUID
    organization_id: uuid.UUID
    tag_id: uuid.UUID


class TagFacts(TenantEventData):
    tag_id: uuid.UUID
    organization_id: uuid.UUID
    name: str = ""


async def on_organization(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(OrganizationFacts)
    if data.settings is None:
        return
    stmt = pg_insert(organizations).values(
        organization_id=data.organization_id, settings=data.settings, version_at=event.time
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[organizations.c.organization_id],
            set_={"settings": stmt.excluded.settings, "version_at": stmt.excluded.version_at},
            where=organizations.c.version_at < stmt.excluded.version_at,
        )
    )


async def _upsert_named(
    session: AsyncSession,
    table: Table,
    event: CloudEvent,
    row_id: uuid.UUID,
    org: uuid.UUID,
    name: str,
    deleted: bool,
) -> None:
    """Departments and tags: a name and a tombstone, the newest event winning."""
    stmt = pg_insert(table).values(
        id=row_id, organization_id=org, name=name, deleted=deleted, version_at=event.time
    )
    values: dict[str, Any] = {"deleted": stmt.excluded.deleted, "version_at": event.time}
    if not deleted:
        values["name"] = stmt.excluded.name
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[table.c.id],
            set_=values,
            where=table.c.version_at < stmt.excluded.version_at,
        )
    )


async def on_department(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(DepartmentFacts)
    deleted = event.type == et.TENANTS_DEPARTMENT_DELETED_V1
    await _upsert_named(
        session, departments, event, data.department_id, data.organization_id, data.name, deleted
    )


async def _ensure_contact(session: AsyncSession, org: uuid.UUID, contact_id: uuid.UUID) -> None:
    await session.execute(
        pg_insert(contacts)
        .values(id=contact_id, organization_id=org, version_at=NEVER)
        .on_conflict_do_nothing(index_elements=[contacts.c.id])
    )


async def on_contact_state(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(ContactFacts)
    await _ensure_contact(session, data.organization_id, data.contact_id)
    values: dict[str, Any] = {"name": data.name, "version_at": event.time}
    if data.attributes is not None:
        values["attributes"] = data.attributes
        values["attributes_at"] = event.time
    await session.execute(
        update(contacts)
        .where(contacts.c.id == data.contact_id, contacts.c.version_at < event.time)
        .values(**values)
    )


async def _flag(session: AsyncSession, event: CloudEvent, **values: Any) -> None:
    data = event.parse_data(ContactFacts)
    await _ensure_contact(session, data.organization_id, data.contact_id)
    await session.execute(update(contacts).where(contacts.c.id == data.contact_id).values(**values))


async def on_blocked(session: AsyncSession, event: CloudEvent) -> None:
    await _flag(session, event, blocked=True)


async def on_unblocked(session: AsyncSession, event: CloudEvent) -> None:
    await _flag(session, event, blocked=False)


async def on_erased(session: AsyncSession, event: CloudEvent) -> None:
    await _flag(
        session, event, erased=True, name=None, attributes=literal({}, contacts.c.attributes.type)
    )


async def on_tagged(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(ContactTagFacts)
    await _ensure_contact(session, data.organization_id, data.contact_id)
    tag_ids = contacts.c.tag_ids
    if event.type == et.CONTACTS_CONTACT_TAGGED_V1:
        new = func.array_append(func.array_remove(tag_ids, data.tag_id), data.tag_id)
    else:
        new = func.array_remove(tag_ids, data.tag_id)
    await session.execute(
        update(contacts).where(contacts.c.id == data.contact_id).values(tag_ids=new)
    )


async def on_tag(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(TagFacts)
    deleted = event.type == et.CONTACTS_TAG_DELETED_V1
    await _upsert_named(session, tags, event, data.tag_id, data.organization_id, data.name, deleted)


REPLICA_HANDLERS: dict[str, Handler] = {
    et.TENANTS_ORGANIZATION_UPDATED_V1: on_organization,
    et.TENANTS_DEPARTMENT_CREATED_V1: on_department,
    et.TENANTS_DEPARTMENT_UPDATED_V1: on_department,
    et.TENANTS_DEPARTMENT_DELETED_V1: on_department,
    et.CONTACTS_CONTACT_CREATED_V1: on_contact_state,
    et.CONTACTS_CONTACT_UPDATED_V1: on_contact_state,
    et.CONTACTS_CONTACT_BLOCKED_V1: on_blocked,
    et.CONTACTS_CONTACT_UNBLOCKED_V1: on_unblocked,
    et.CONTACTS_CONTACT_ERASED_V1: on_erased,
    et.CONTACTS_CONTACT_TAGGED_V1: on_tagged,
    et.CONTACTS_CONTACT_UNTAGGED_V1: on_tagged,
    et.CONTACTS_TAG_CREATED_V1: on_tag,
    et.CONTACTS_TAG_UPDATED_V1: on_tag,
    et.CONTACTS_TAG_DELETED_V1: on_tag,
}
