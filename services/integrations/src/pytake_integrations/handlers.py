"""Consumers: internal events become public webhook events, queued per subscribed endpoint.

Each handler reads what it needs of one internal event (tolerant readers), builds the
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

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.consumer import Handler
from pytake_common.events import CloudEvent
from pytake_integrations import public
from pytake_integrations.queue import enqueue

MESSAGE_APPENDED = "pytake.conversations.message.appended.v1"
MESSAGE_STATUS_CHANGED = "pytake.conversations.message.status_changed.v1"
CONVERSATION_OPENED = "pytake.conversations.conversation.opened.v1"
CONVERSATION_ASSIGNED = "pytake.conversations.conversation.assigned.v1"
CONVERSATION_STATUS_CHANGED = "pytake.conversations.conversation.status_changed.v1"
CONTACT_CREATED = "pytake.contacts.contact.created.v1"
CONTACT_UPDATED = "pytake.contacts.contact.updated.v1"

#: Derives public event ids from facts (uuid5): stable across republishes.
PUBLIC_EVENTS = uuid.UUID("6f1b2c4e-8a7d-5e3f-9c10-2b4d6e8f0a12")


class Appended(BaseModel):
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    direction: str
    type: str
    created_at: datetime


class StatusChanged(BaseModel):
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    status: str
    error_code: int | None = None
    error_detail: str | None = None
    at: datetime


STATUS_TYPES: dict[str, type[public.MessageStatus]] = {
    "sent": public.MessageSent,
    "delivered": public.MessageDelivered,
    "read": public.MessageRead,
    "failed": public.MessageFailed,
}

Built = tuple[public.PublicData, str, str, datetime]  # data, fact key, ordering key, time
Builder = Callable[[CloudEvent], Built | None]


def _message_appended(event: CloudEvent) -> Built | None:
    d = event.parse_data(Appended)
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


def _message_status(event: CloudEvent) -> Built | None:
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


def _conversation(model: type[public.PublicData], time_field: str) -> Builder:
    def build(event: CloudEvent) -> Built:
        data = model.model_validate(event.data)
        at: datetime = getattr(data, time_field)
        conversation = str(event.data["conversation_id"])
        return data, f"{conversation}:{at.isoformat()}", conversation, at

    return build


def _contact(model: type[public.PublicData], by_fact: bool) -> Builder:
    def build(event: CloudEvent) -> Built:
        data = model.model_validate(event.data)
        contact = str(event.data["contact_id"])
        # a contact is created once; its updates have no time of their own: the event's id
        return data, contact if by_fact else str(event.id), contact, event.time

    return build


def handler(build: Builder) -> Handler:
    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        built = build(event)
        if built is None:
            return
        data, fact, ordering_key, at = built
        event_id = uuid.uuid5(PUBLIC_EVENTS, f"{data.public_type}:{fact}")
        org = uuid.UUID(event.tenantid)
        body = public.event_of(
            data, event_id=event_id, organization_id=org, created_at=at.astimezone(UTC)
        )
        await enqueue(session, org, body, ordering_key)

    return handle


def _lenient(model: type[public.PublicData]) -> type[public.PublicData]:
    """``model`` reading an internal event's data: the fields it does not name are ignored."""
    config = {**model.model_config, "extra": "ignore"}
    return type(model.__name__, (model,), {"model_config": config})


HANDLERS: dict[str, Handler] = {
    MESSAGE_APPENDED: handler(_message_appended),
    MESSAGE_STATUS_CHANGED: handler(_message_status),
    CONVERSATION_OPENED: handler(_conversation(_lenient(public.ConversationOpened), "opened_at")),
    CONVERSATION_ASSIGNED: handler(_conversation(_lenient(public.ConversationAssigned), "at")),
    CONVERSATION_STATUS_CHANGED: handler(
        _conversation(_lenient(public.ConversationStatusChanged), "at")
    ),
    CONTACT_CREATED: handler(_contact(_lenient(public.ContactCreated), by_fact=True)),
    CONTACT_UPDATED: handler(_contact(_lenient(public.ContactUpdated), by_fact=False)),
}
