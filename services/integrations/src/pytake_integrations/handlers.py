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

from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common import event_types as et
from pytake_common.consumer import Handler, SetHandler
from pytake_common.events import CloudEvent, TenantEventData
from pytake_integrations import public
from pytake_integrations.queue import enqueue, enqueue_many

#: Derives public event ids from facts (uuid5): stable across republishes.
PUBLIC_EVENTS = uuid.UUID("6f1b2c4e-8a7d-5e3f-9c10-2b4d6e8f0a12")


# What integrations reads of each internal event (other fields are ignored).
class OrgData(TenantEventData):
    organization_id: uuid.UUID


class Appended(OrgData):
    organization_id: uuid.UUID
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    direction: str
    type: str
    created_at: datetime


class StatusChanged(OrgData):
    organization_id: uuid.UUID
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    status: str
    error_code: int | None = None
    error_detail: str | None = None
    at: datetime


class Opened(OrgData):
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    number_id: uuid.UUID
    opened_at: datetime


class Assigned(OrgData):
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    assignee_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    assigned_by: uuid.UUID | None = None
    at: datetime


class ConversationMoved(OrgData):
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


def message_appended(d: Appended) -> Built | None:
    if d.direction != "inbound":
        return None  # an agent's message: its statuses are the public events
    data = public.MessageReceived(
        message_id=d.message_id,
        conversation_id=d.conversation_id,
        contact_id=d.contact_id,
        type=d.type,
        received_at=d.created_at,
    )
    return data, str(d.message_id), str(d.conversation_id), d.created_at


def message_status(d: StatusChanged) -> Built | None:
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


def conversation_opened(d: Opened) -> Built:
    data = public.ConversationOpened(**d.model_dump(exclude={"organization_id"}))
    fact = f"{d.conversation_id}:{d.opened_at.isoformat()}"
    return data, fact, str(d.conversation_id), d.opened_at


def conversation_assigned(d: Assigned) -> Built:
    data = public.ConversationAssigned(**d.model_dump(exclude={"organization_id"}))
    return data, f"{d.conversation_id}:{d.at.isoformat()}", str(d.conversation_id), d.at


def conversation_moved(d: ConversationMoved) -> Built:
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


def public_event(org: uuid.UUID, built: Built) -> tuple[public.PublicEvent, str]:
    """The public event of a built fact (its id derived from the fact) and its ordering key."""
    data, fact, ordering_key, at = built
    event_id = uuid.uuid5(PUBLIC_EVENTS, f"{data.public_type}:{fact}")
    body = public.event_of(
        data, event_id=event_id, organization_id=org, created_at=at.astimezone(UTC)
    )
    return body, ordering_key


def handler(build: Builder) -> Handler:
    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        built = build(event)
        if built is None:
            return
        org = uuid.UUID(event.tenantid)
        body, ordering_key = public_event(org, built)
        await enqueue(session, org, body, ordering_key)

    return handle


#: The per-message internal events: a consumer batch's of one organization are queued
#: together (one endpoint lookup per batch instead of one per event), in the batch's
#: order, since the public events of one conversation are delivered in that order.
_FACTS: dict[str, tuple[type[OrgData], Callable[[Any], Built | None]]] = {
    et.CONVERSATIONS_MESSAGE_APPENDED_V1: (Appended, message_appended),
    et.CONVERSATIONS_MESSAGE_STATUS_CHANGED_V1: (StatusChanged, message_status),
    et.CONVERSATIONS_CONVERSATION_OPENED_V1: (Opened, conversation_opened),
    et.CONVERSATIONS_CONVERSATION_ASSIGNED_V1: (Assigned, conversation_assigned),
    et.CONVERSATIONS_CONVERSATION_STATUS_CHANGED_V1: (ConversationMoved, conversation_moved),
}
_BUILD = {model: build for model, build in _FACTS.values()}


def _read(event: CloudEvent) -> OrgData:
    return event.parse_data(_FACTS[event.type][0])


async def queue_facts(session: AsyncSession, rows: list[OrgData]) -> None:
    org = rows[0].organization_id
    built = [b for row in rows if (b := _BUILD[type(row)](row)) is not None]
    await enqueue_many(session, org, [public_event(org, b) for b in built])


FACTS = SetHandler(OrgData, queue_facts, parse=_read)

HANDLERS: dict[str, Handler] = {
    **dict.fromkeys(_FACTS, FACTS),
    et.CONTACTS_CONTACT_CREATED_V1: handler(contact_created),
    et.CONTACTS_CONTACT_UPDATED_V1: handler(contact_updated),
}
