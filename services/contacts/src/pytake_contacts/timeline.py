"""The contact timeline built from conversations' events (each fact recorded once)."""

import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.consumer import PermanentError
from pytake_common.events import CloudEvent
from pytake_contacts.store import record_interaction
from pytake_contacts.tables import contacts

OPENED = "pytake.conversations.conversation.opened.v1"
STATUS_CHANGED = "pytake.conversations.conversation.status_changed.v1"
APPENDED = "pytake.conversations.message.appended.v1"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


Utc = Annotated[datetime, AfterValidator(_utc)]


class Opened(BaseModel):
    conversation_id: uuid.UUID
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    opened_at: Utc
    previous_conversation_id: uuid.UUID | None = None
    started_by: uuid.UUID | None = None


class StatusChanged(BaseModel):
    conversation_id: uuid.UUID
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    old_status: str | None = None
    new_status: str
    changed_by: uuid.UUID | None = None
    at: Utc


class Appended(BaseModel):
    message_id: uuid.UUID
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    direction: str
    type: str
    created_at: Utc


def _tenant(event: CloudEvent, org: uuid.UUID) -> None:
    if event.tenantid != str(org):
        raise PermanentError("event tenant differs from its organization")


async def on_opened(session: AsyncSession, event: CloudEvent) -> None:
    d = event.parse_data(Opened)
    _tenant(event, d.organization_id)
    await record_interaction(
        session,
        d.organization_id,
        d.contact_id,
        "conversation.opened",
        d.opened_at,
        f"opened:{d.conversation_id}:{d.opened_at.isoformat()}",
        {
            "conversation_id": str(d.conversation_id),
            # a new conversation after a closed one links back to it
            "previous_conversation_id": (
                str(d.previous_conversation_id) if d.previous_conversation_id else None
            ),
            # null: the customer's message opened it
            "started_by": str(d.started_by) if d.started_by else None,
        },
    )


async def on_status_changed(session: AsyncSession, event: CloudEvent) -> None:
    d = event.parse_data(StatusChanged)
    _tenant(event, d.organization_id)
    await record_interaction(
        session,
        d.organization_id,
        d.contact_id,
        "conversation.status_changed",
        d.at,
        f"status:{d.conversation_id}:{d.new_status}:{d.at.isoformat()}",
        {
            "conversation_id": str(d.conversation_id),
            "old_status": d.old_status,
            "new_status": d.new_status,
            "changed_by": str(d.changed_by) if d.changed_by else None,
        },
    )


async def on_appended(session: AsyncSession, event: CloudEvent) -> None:
    d = event.parse_data(Appended)
    _tenant(event, d.organization_id)
    kind = "message.inbound" if d.direction == "inbound" else "message.outbound"
    await record_interaction(
        session,
        d.organization_id,
        d.contact_id,
        kind,
        d.created_at,
        f"message:{d.message_id}",
        {
            "conversation_id": str(d.conversation_id),
            "message_id": str(d.message_id),
            "type": d.type,
        },
    )
    # An agent's reply is an interaction too (inbound ones already moved it on receipt).
    await session.execute(
        update(contacts)
        .where(
            contacts.c.id == d.contact_id,
            contacts.c.organization_id == d.organization_id,
            (contacts.c.last_interaction_at.is_(None))
            | (contacts.c.last_interaction_at < d.created_at),
        )
        .values(last_interaction_at=d.created_at, updated_at=func.now())
    )


TIMELINE_HANDLERS = {OPENED: on_opened, STATUS_CHANGED: on_status_changed, APPENDED: on_appended}
