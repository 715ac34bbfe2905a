"""Replica of auth's users (only what assignment needs), fed by auth's events.

Each handler is an upsert that never moves a user backwards in time: the row keeps the
``updated_at`` of the newest event applied, so a redelivered older event changes nothing.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.consumer import PermanentError
from pytake_common.events import CloudEvent
from pytake_contacts.tables import users

PREFIX = "pytake.auth.user."
REGISTERED = PREFIX + "registered.v1"
CREATED = PREFIX + "created.v1"
UPDATED = PREFIX + "updated.v1"
ACTIVATED = PREFIX + "activated.v1"
DEACTIVATED = PREFIX + "deactivated.v1"
DELETED = PREFIX + "deleted.v1"


class UserFact(BaseModel):
    """What contacts reads of auth's user events (tolerant reader)."""

    user_id: uuid.UUID
    organization_id: uuid.UUID
    full_name: str | None = None
    role: str | None = None
    is_active: bool | None = None


def _at(event: CloudEvent) -> datetime:
    return event.time if event.time.tzinfo else event.time.replace(tzinfo=UTC)


async def on_user_event(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(UserFact)
    if str(data.organization_id) != event.tenantid:
        raise PermanentError("user event tenant differs from its organization")
    values: dict[str, Any] = {}
    if data.full_name is not None:
        values["full_name"] = data.full_name[:256]
    if data.role is not None:
        values["role"] = data.role
    if event.type in (REGISTERED, CREATED, UPDATED) and data.is_active is not None:
        values["is_active"] = data.is_active
    if event.type == ACTIVATED:
        values["is_active"] = True
    if event.type == DEACTIVATED:
        values["is_active"] = False
    if event.type == DELETED:
        values |= {"is_active": False, "deleted_at": _at(event)}
    at = _at(event)
    stmt = pg_insert(users).values(
        id=data.user_id, organization_id=data.organization_id, updated_at=at, **values
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[users.c.id],
            set_={**{k: stmt.excluded[k] for k in values}, "updated_at": at},
            # Older facts than what the row holds are ignored; a deleted user stays deleted.
            where=users.c.deleted_at.is_(None) & (users.c.updated_at <= at),
        )
    )


USER_HANDLERS = {
    t: on_user_event for t in (REGISTERED, CREATED, UPDATED, ACTIVATED, DEACTIVATED, DELETED)
}
