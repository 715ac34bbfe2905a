"""The copy of auth's users a service keeps in its own database, fed by auth's events.

Services that must know users without calling auth (who may be assigned a contact or a
conversation, who may join a department, agents' names) keep a table of one shape,
declared with :func:`users_table`, and handle ``pytake.auth.user.*`` with the handlers
:func:`user_handlers` builds. Each event is one upsert:

- the row keeps, in ``updated_at``, the time of the newest event applied, so an older
  event arriving late (a redelivery, a replay) changes nothing;
- a deleted user is a tombstone: nothing brings it back;
- an event for a user the table does not know yet creates the row (auth keys its user
  events by user id, so one user's events arrive in order).

A service that must do more when a user goes (tenants drops them from departments)
passes ``on_deleted``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Column, DateTime, Index, MetaData, String, Table, func, true
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.consumer import Handler
from pytake_common.event_types import (
    AUTH_USER_ACTIVATED_V1,
    AUTH_USER_CREATED_V1,
    AUTH_USER_DEACTIVATED_V1,
    AUTH_USER_DELETED_V1,
    AUTH_USER_REGISTERED_V1,
    AUTH_USER_UPDATED_V1,
)
from pytake_common.events import CloudEvent, TenantEventData

#: What a service may add to a user's deletion: ``(session, organization_id, user_id)``.
OnDeleted = Callable[[AsyncSession, uuid.UUID, uuid.UUID], Awaitable[None]]


def users_table(metadata: MetaData, name: str = "users") -> Table:
    """The table of auth's users in ``metadata`` (each service's migrations create it)."""
    table = Table(
        name,
        metadata,
        Column("id", UUID(as_uuid=True), primary_key=True),
        Column("organization_id", UUID(as_uuid=True), nullable=False),
        Column("full_name", String(256), nullable=True),
        Column("role", String(32), nullable=True),
        Column("is_active", Boolean, nullable=False, server_default=true()),
        Column("deleted_at", DateTime(timezone=True), nullable=True),
        #: the time of the newest event applied (not of the write)
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    Index(f"ix_{name}_organization_id", table.c.organization_id)
    return table


class UserFacts(TenantEventData):
    """What a service reads of auth's user events (tolerant reader)."""

    user_id: uuid.UUID
    organization_id: uuid.UUID
    full_name: str | None = None
    role: str | None = None
    is_active: bool | None = None


def _changes(event_type: str, data: UserFacts, at: datetime) -> dict[str, Any]:
    """The columns ``event_type`` sets (the others keep what the row holds)."""
    values: dict[str, Any] = {}
    if data.full_name is not None:
        values["full_name"] = data.full_name[:256]
    if data.role is not None:
        values["role"] = data.role
    if event_type == AUTH_USER_REGISTERED_V1:
        values["is_active"] = True  # the first user of a new organization
    elif data.is_active is not None and event_type in (AUTH_USER_CREATED_V1, AUTH_USER_UPDATED_V1):
        values["is_active"] = data.is_active
    elif event_type == AUTH_USER_ACTIVATED_V1:
        values["is_active"] = True
    elif event_type == AUTH_USER_DEACTIVATED_V1:
        values["is_active"] = False
    elif event_type == AUTH_USER_DELETED_V1:
        values |= {"is_active": False, "deleted_at": at}
    return values


async def apply_user_event(session: AsyncSession, table: Table, event: CloudEvent) -> UserFacts:
    """Upsert the user ``event`` speaks of into ``table``; returns what it read."""
    data = event.parse_data(UserFacts)
    at = event.time
    values = _changes(event.type, data, at)
    stmt = pg_insert(table).values(
        id=data.user_id, organization_id=data.organization_id, updated_at=at, **values
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[table.c.id],
            set_={**{k: stmt.excluded[k] for k in values}, "updated_at": at},
            # Older facts than the row's are ignored; a deleted user stays deleted; a user
            # id never moves to another organization.
            where=table.c.deleted_at.is_(None)
            & (table.c.updated_at <= at)
            & (table.c.organization_id == data.organization_id),
        )
    )
    return data


def user_handlers(table: Table, *, on_deleted: OnDeleted | None = None) -> dict[str, Handler]:
    """Handlers of every ``pytake.auth.user`` event that changes a user, keeping ``table``."""

    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        data = await apply_user_event(session, table, event)
        if on_deleted is not None and event.type == AUTH_USER_DELETED_V1:
            await on_deleted(session, data.organization_id, data.user_id)

    return {
        event_type: handle
        for event_type in (
            AUTH_USER_REGISTERED_V1,
            AUTH_USER_CREATED_V1,
            AUTH_USER_UPDATED_V1,
            AUTH_USER_ACTIVATED_V1,
            AUTH_USER_DEACTIVATED_V1,
            AUTH_USER_DELETED_V1,
        )
    }
