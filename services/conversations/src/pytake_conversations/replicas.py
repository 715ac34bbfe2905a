"""Local replicas of other services' facts conversations needs, built from their events.

- users (auth): who may be assigned a conversation, and agents' names for canned responses
  (the table and its handlers are every service's: pytake_common.auth_users);
- departments (tenants): routing of new conversations (members, strategy, cap);
- contacts (contacts): names for canned responses, the block list, and erasure.

Each handler is idempotent and order-tolerant: rows carry the time of the newest event
applied (``version_at``) and an older event arriving late changes nothing.
"""

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.auth_users import user_handlers
from pytake_common.consumer import Handler
from pytake_common.event_types import (
    CONTACTS_CONTACT_BLOCKED_V1,
    CONTACTS_CONTACT_CREATED_V1,
    CONTACTS_CONTACT_ERASED_V1,
    CONTACTS_CONTACT_UNBLOCKED_V1,
    CONTACTS_CONTACT_UPDATED_V1,
    TENANTS_DEPARTMENT_CREATED_V1,
    TENANTS_DEPARTMENT_DELETED_V1,
    TENANTS_DEPARTMENT_UPDATED_V1,
)
from pytake_common.events import CloudEvent, TenantEventData
from pytake_conversations.tables import (
    contact_replicas,
    conversations,
    departments,
    messages,
    user_replicas,
)


class Routing(TenantEventData):
    strategy: str = "manual"
    max_open_per_agent: int | None = None
    is_default: bool | None = None
    number_ids: list[uuid.UUID] | None = None


class DepartmentFacts(TenantEventData):
    department_id: uuid.UUID
    organization_id: uuid.UUID
    name: str = ""
    member_ids: list[uuid.UUID] = Field(default_factory=list)
    routing: Routing = Field(default_factory=Routing)
    #: optional: the organization's default department / the numbers routed to it
    is_default: bool = False
    number_ids: list[uuid.UUID] = Field(default_factory=list)


class ContactFacts(TenantEventData):
    contact_id: uuid.UUID
    organization_id: uuid.UUID
    name: str | None = None
    phone: str | None = None
    blocked_at: datetime | None = None
    unblocked_at: datetime | None = None


# --- departments -----------------------------------------------------------------------


async def on_department_upserted(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(DepartmentFacts)
    org = data.organization_id
    routing = data.routing
    values: dict[str, Any] = {
        "organization_id": org,
        "name": data.name,
        "member_ids": data.member_ids,
        "strategy": routing.strategy,
        "max_open_per_agent": routing.max_open_per_agent,
        "is_default": routing.is_default if routing.is_default is not None else data.is_default,
        "number_ids": routing.number_ids if routing.number_ids is not None else data.number_ids,
        "deleted": False,
        "version_at": event.time,
    }
    insert = pg_insert(departments).values(id=data.department_id, **values)
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=[departments.c.id],
            set_={k: insert.excluded[k] for k in values},
            where=departments.c.version_at <= insert.excluded.version_at,
        )
    )


async def on_department_deleted(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(DepartmentFacts)
    org = data.organization_id
    # A tombstone, so a late "updated" cannot bring the department back.
    insert = pg_insert(departments).values(
        id=data.department_id,
        organization_id=org,
        name="",
        deleted=True,
        version_at=event.time,
    )
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=[departments.c.id],
            set_={"deleted": True, "version_at": insert.excluded.version_at},
            where=departments.c.version_at <= insert.excluded.version_at,
        )
    )


# --- contacts --------------------------------------------------------------------------


async def on_contact_upserted(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(ContactFacts)
    org = data.organization_id
    insert = pg_insert(contact_replicas).values(
        id=data.contact_id,
        organization_id=org,
        name=data.name,
        phone=data.phone,
        updated_at=event.time,
    )
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=[contact_replicas.c.id],
            set_={
                "name": insert.excluded.name,
                "phone": insert.excluded.phone,
                "updated_at": insert.excluded.updated_at,
            },
            where=contact_replicas.c.updated_at <= insert.excluded.updated_at,
        )
    )


async def _set_blocked(session: AsyncSession, event: CloudEvent, blocked: bool) -> None:
    data = event.parse_data(ContactFacts)
    org = data.organization_id
    at = (data.blocked_at if blocked else data.unblocked_at) or event.time
    insert = pg_insert(contact_replicas).values(
        id=data.contact_id, organization_id=org, blocked=blocked, blocked_changed_at=at
    )
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=[contact_replicas.c.id],
            set_={"blocked": blocked, "blocked_changed_at": at},
            where=(contact_replicas.c.blocked_changed_at.is_(None))
            | (contact_replicas.c.blocked_changed_at <= at),
        )
    )


async def on_contact_blocked(session: AsyncSession, event: CloudEvent) -> None:
    await _set_blocked(session, event, True)


async def on_contact_unblocked(session: AsyncSession, event: CloudEvent) -> None:
    await _set_blocked(session, event, False)


async def on_contact_erased(session: AsyncSession, event: CloudEvent) -> None:
    """Privacy erasure: forget the contact's name, number and message contents here."""
    data = event.parse_data(ContactFacts)
    org = data.organization_id
    await session.execute(
        update(contact_replicas)
        .where(contact_replicas.c.id == data.contact_id, contact_replicas.c.organization_id == org)
        .values(name=None, phone=None)
    )
    theirs = select(conversations.c.id).where(
        conversations.c.organization_id == org, conversations.c.contact_id == data.contact_id
    )
    await session.execute(
        update(messages)
        .where(messages.c.organization_id == org, messages.c.conversation_id.in_(theirs))
        .values(text=None, content={})
    )
    await session.execute(
        update(conversations)
        .where(
            conversations.c.organization_id == org, conversations.c.contact_id == data.contact_id
        )
        .values(wa_id=None, user_id=None)
    )


REPLICA_HANDLERS: dict[str, Handler] = {
    **user_handlers(user_replicas),
    TENANTS_DEPARTMENT_CREATED_V1: on_department_upserted,
    TENANTS_DEPARTMENT_UPDATED_V1: on_department_upserted,
    TENANTS_DEPARTMENT_DELETED_V1: on_department_deleted,
    CONTACTS_CONTACT_CREATED_V1: on_contact_upserted,
    CONTACTS_CONTACT_UPDATED_V1: on_contact_upserted,
    CONTACTS_CONTACT_BLOCKED_V1: on_contact_blocked,
    CONTACTS_CONTACT_UNBLOCKED_V1: on_contact_unblocked,
    CONTACTS_CONTACT_ERASED_V1: on_contact_erased,
}
