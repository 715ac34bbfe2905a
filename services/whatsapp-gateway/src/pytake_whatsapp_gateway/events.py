"""Events the WhatsApp gateway publishes.

Topics: ``pytake.whatsapp.number`` (subject: number id) and
``pytake.whatsapp.message`` (subject: the contact id for inbound messages, so a
customer's messages stay ordered; our message id for outbound outcomes).
"""

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypedDict

from pytake_common.events import EventData

NUMBER_TOPIC = "pytake.whatsapp.number"
MESSAGE_TOPIC = "pytake.whatsapp.message"

#: A reply (``from``/``id`` of the quoted message) and/or a forward marker.
MessageContext = TypedDict(
    "MessageContext", {"from": str | None, "id": str | None, "forwarded": bool}
)


class NumberRegistered(EventData):
    event_type = "pytake.whatsapp.number.registered.v1"
    topic = NUMBER_TOPIC

    number_id: uuid.UUID
    organization_id: uuid.UUID
    phone_number_id: str
    waba_id: str
    display_phone_number: str


class MessageReceived(EventData):
    """A customer's message, whatever its type (``content`` is Meta's raw object)."""

    event_type = "pytake.whatsapp.message.received.v1"
    topic = MESSAGE_TOPIC

    message_id: uuid.UUID
    wamid: str
    organization_id: uuid.UUID
    number_id: uuid.UUID
    phone_number_id: str
    display_phone_number: str
    contact_id: uuid.UUID
    wa_id: str | None
    user_id: str | None
    profile_name: str | None
    type: str
    text: str | None
    content: dict[str, Any]
    context: MessageContext | None
    timestamp: datetime


class StatusError(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: int | None
    title: str | None
    message: str | None
    details: str | None


class MessageStatusUpdated(EventData):
    """Meta's status of a message we sent: sent | delivered | read | played | failed.

    Statuses arrive out of order and repeated; consumers must never move a
    message's status backwards. ``message_id`` is null for messages PyTake did
    not send (e.g. sent from another client of the same number).
    """

    event_type = "pytake.whatsapp.message.status_updated.v1"
    topic = MESSAGE_TOPIC

    message_id: uuid.UUID | None
    wamid: str
    organization_id: uuid.UUID
    number_id: uuid.UUID
    status: str
    timestamp: datetime
    recipient_id: str | None
    errors: list[StatusError]


class MessageSent(EventData):
    """Meta accepted the message (delivery arrives later as a status)."""

    event_type = "pytake.whatsapp.message.sent.v1"
    topic = MESSAGE_TOPIC

    message_id: uuid.UUID
    organization_id: uuid.UUID
    number_id: uuid.UUID
    wamid: str
    to: str
    sent_at: datetime


class MessageFailed(EventData):
    """The message was not sent; ``retryable`` says whether a new attempt may succeed."""

    event_type = "pytake.whatsapp.message.failed.v1"
    topic = MESSAGE_TOPIC

    message_id: uuid.UUID
    organization_id: uuid.UUID
    number_id: uuid.UUID
    to: str
    error_code: int | None
    error_title: str | None
    error_detail: str
    retryable: bool
    failed_at: datetime
