"""The contact timeline built from conversations' events (each fact recorded once)."""

import uuid
from datetime import datetime

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.event_types import (
    CONVERSATIONS_CONVERSATION_OPENED_V1,
    CONVERSATIONS_CONVERSATION_STATUS_CHANGED_V1,
    CONVERSATIONS_MESSAGE_APPENDED_V1,
)
from pytake_common.events import CloudEvent, TenantEventData
from pytake_contacts.store import record_interaction
from pytake_contacts.tables import contacts


class Opened(TenantEventData):
    conversation_id: uuid.UUID
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    opened_at: datetime
    previous_conversation_id: uuid.UUID | None = None
    started_by: uuid.UUID | None = None


class StatusChanged(TenantEventData):
    conversation_id: uuid.UUID
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    old_status: str | None = None
    new_status: str
    changed_by: uuid.UUID | None = None
    at: datetime


class Appended(TenantEventData):
    message_id: uuid.UUID
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    direction: str
    type: str
    created_at: datetime


async def on_opened(session: AsyncSession, event: CloudEvent) -> None:
    d = event.parse_data(Opened)
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


TIMELINE_HANDLERS = {
    CONVERSATIONS_CONVERSATION_OPENED_V1: on_opened,
    CONVERSATIONS_CONVERSATION_STATUS_CHANGED_V1: on_status_changed,
    CONVERSATIONS_MESSAGE_APPENDED_V1: on_appended,
}
