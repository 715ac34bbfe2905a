"""Consumers: internal events become public webhook events, queued per subscribed endpoint.

Each handler reads what it needs of one internal event (a tolerant reader), builds the
public payload (:mod:`pytake_integrations.public`) and queues one delivery per enabled
endpoint of the organization subscribed to its type, in the inbox's transaction. The
public event id is derived from the fact (the message and its status, the conversation
and its time, ...), so the same fact republished under another internal event id queues
nothing new (unique (endpoint, event) + ``ON CONFLICT DO NOTHING``).

Message events come from conversations' topic, which carries the conversation of every
message (the ordering key) and moves a status only forward; whatsapp-gateway's raw status
events lack both, and conversations derives its ``message.status_changed`` from them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common import event_types as et
from pytake_common.consumer import Handler
from pytake_common.events import CloudEvent, TenantEventData
from pytake_integrations import public
from pytake_integrations.queue import enqueue

#: Derives public event ids from facts (uuid5): stable across republishes.
PUBLIC_EVENTS = uuid.UUID("6f1b2c4e-8a7d-5e3f-9c10-2b4d6e8f0a12")


# What integrations reads of each internal event (other fields are ignored).
class Appended(TenantEventData):
    organization_id: uuid.UUID
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    direction: str
    type: str
    created_at: datetime
    # Optional in conversations' event (CONTRACT.md A): absent from older producers.
    text: str | None = None
    reply: dict[str, Any] | None = None


class StatusChanged(TenantEventData):
    organization_id: uuid.UUID
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    status: str
    error_code: int | None = None
    error_detail: str | None = None
    at: datetime


class Opened(TenantEventData):
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    number_id: uuid.UUID
    opened_at: datetime


class Assigned(TenantEventData):
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    assignee_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    assigned_by: uuid.UUID | None = None
    at: datetime


class ConversationMoved(TenantEventData):
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    old_status: str
    new_status: str
    changed_by: uuid.UUID | None = None
    at: datetime


class ContactState(TenantEventData):
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    wa_id: str | None = None
    name: str | None = None
    phone: str | None = None
    changed: list[str] = []


STATUS_TYPES: dict[str, type[public.MessageStatus]] = {
    "sent": public.MessageSent,
    "delivered": public.MessageDelivered,
    "read": public.MessageRead,
    "failed": public.MessageFailed,
}

Built = tuple[public.PublicData, str, str, datetime]  # data, fact key, ordering key, time
Builder = Callable[[CloudEvent], Built | None]


def public_reply(raw: dict[str, Any] | None) -> public.Reply | None:
    """The public reply of an internal one; None when absent or of a shape v1 does not
    know (a new kind is left out rather than failing the whole event)."""
    if not raw:
        return None
    try:
        return public.Reply.model_validate({k: raw.get(k) for k in ("kind", "id", "title")})
    except ValidationError:
        return None


def message_appended(event: CloudEvent) -> Built | None:
    d = event.parse_data(Appended)
    if d.direction != "inbound":
        return None  # an agent's message: its statuses are the public events
    data = public.MessageReceived(
        message_id=d.message_id,
        conversation_id=d.conversation_id,
        contact_id=d.contact_id,
        type=d.type,
        received_at=d.created_at,
        text=d.text,
        reply=public_reply(d.reply),
    )
    return data, str(d.message_id), str(d.conversation_id), d.created_at


def message_status(event: CloudEvent) -> Built | None:
    d = event.parse_data(StatusChanged)
    model = STATUS_TYPES.get(d.status)
    if model is None:
        return None  # a status with no public type (e.g. played)
    failed = d.status == "failed"
    data = model(
        message_id=d.message_id,
        conversation_id=d.conversation_id,
        status=d.status,
        error_code=d.error_code if failed else None,
        error_detail=d.error_detail if failed else None,
        at=d.at,
    )
    return data, f"{d.message_id}:{d.status}", str(d.conversation_id), d.at


def conversation_opened(event: CloudEvent) -> Built:
    d = event.parse_data(Opened)
    data = public.ConversationOpened(**d.model_dump(exclude={"organization_id"}))
    fact = f"{d.conversation_id}:{d.opened_at.isoformat()}"
    return data, fact, str(d.conversation_id), d.opened_at


def conversation_assigned(event: CloudEvent) -> Built:
    d = event.parse_data(Assigned)
    data = public.ConversationAssigned(**d.model_dump(exclude={"organization_id"}))
    return data, f"{d.conversation_id}:{d.at.isoformat()}", str(d.conversation_id), d.at


def conversation_moved(event: CloudEvent) -> Built:
    d = event.parse_data(ConversationMoved)
    data = public.ConversationStatusChanged(**d.model_dump(exclude={"organization_id"}))
    fact = f"{d.conversation_id}:{d.new_status}:{d.at.isoformat()}"
    return data, fact, str(d.conversation_id), d.at


def contact_created(event: CloudEvent) -> Built:
    d = event.parse_data(ContactState)
    data = public.ContactCreated(contact_id=d.contact_id, wa_id=d.wa_id, name=d.name, phone=d.phone)
    return data, str(d.contact_id), str(d.contact_id), event.time  # created once


def contact_updated(event: CloudEvent) -> Built:
    d = event.parse_data(ContactState)
    data = public.ContactUpdated(
        contact_id=d.contact_id, name=d.name, phone=d.phone, changed=d.changed
    )
    # an update has no time of its own in the event: the event's id names the fact
    return data, str(event.id), str(d.contact_id), event.time


def public_event(event: CloudEvent, build: Builder) -> tuple[public.PublicEvent, str] | None:
    """The public event ``event`` makes (and its ordering key), or None."""
    built = build(event)
    if built is None:
        return None
    data, fact, ordering_key, at = built
    event_id = uuid.uuid5(PUBLIC_EVENTS, f"{data.public_type}:{fact}")
    body = public.event_of(
        data,
        event_id=event_id,
        organization_id=uuid.UUID(event.tenantid),
        created_at=at.astimezone(UTC),
    )
    return body, ordering_key


def handler(build: Builder) -> Handler:
    """One record at a time (the kit's path for a record that failed in its batch)."""

    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        made = public_event(event, build)
        if made is not None:
            await enqueue(session, uuid.UUID(event.tenantid), *made)

    return handle


BUILDERS: dict[str, Builder] = {
    et.CONVERSATIONS_MESSAGE_APPENDED_V1: message_appended,
    et.CONVERSATIONS_MESSAGE_STATUS_CHANGED_V1: message_status,
    et.CONVERSATIONS_CONVERSATION_OPENED_V1: conversation_opened,
    et.CONVERSATIONS_CONVERSATION_ASSIGNED_V1: conversation_assigned,
    et.CONVERSATIONS_CONVERSATION_STATUS_CHANGED_V1: conversation_moved,
    et.CONTACTS_CONTACT_CREATED_V1: contact_created,
    et.CONTACTS_CONTACT_UPDATED_V1: contact_updated,
}
HANDLERS: dict[str, Handler] = {etype: handler(build) for etype, build in BUILDERS.items()}
