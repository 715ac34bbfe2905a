"""The public webhook contract: event types integrators subscribe to and their payloads.

These shapes are a versioned contract of their own (``docs/webhooks.md``, JSON Schemas in
``schemas/webhooks/``), built from internal events by :mod:`pytake_integrations.handlers`
and never the internal CloudEvents as they are. A breaking change is a new ``version``.
Nothing here may carry a secret.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

API_VERSION = 1


class PublicData(BaseModel):
    """The ``data`` of one public event type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_type: ClassVar[str] = ""
    description: ClassVar[str] = ""


class Reply(BaseModel):
    """The button or list row a customer chose (an interactive reply, or a template's
    quick-reply button)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["button", "list"]
    id: str = Field(description="The button's or row's id (a template button's payload)")
    title: str = Field(description="What the customer saw and tapped")


class MessageReceived(PublicData):
    public_type = "message.received"
    description = "A customer's WhatsApp message joined a conversation."

    message_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    type: str = Field(description="WhatsApp message type: text, image, audio, ...")
    received_at: datetime
    # Added within v1 (optional: absent or null in older deliveries).
    text: str | None = Field(
        default=None,
        description="The text of a text message; for an interactive reply, the title chosen",
    )
    reply: Reply | None = Field(
        default=None, description="The button or list row chosen, for an interactive reply"
    )


class MessageStatus(PublicData):
    """An agent's message moved forward in its delivery: never backwards."""

    message_id: uuid.UUID
    conversation_id: uuid.UUID
    status: Literal["sent", "delivered", "read", "failed"]
    error_code: int | None = Field(description="WhatsApp's error code when failed")
    error_detail: str | None
    at: datetime


class MessageSent(MessageStatus):
    public_type = "message.sent"
    description = "WhatsApp accepted an agent's message."


class MessageDelivered(MessageStatus):
    public_type = "message.delivered"
    description = "An agent's message reached the customer's phone."


class MessageRead(MessageStatus):
    public_type = "message.read"
    description = "The customer read an agent's message."


class MessageFailed(MessageStatus):
    public_type = "message.failed"
    description = "An agent's message could not be delivered."


class ConversationOpened(PublicData):
    public_type = "conversation.opened"
    description = "A customer's message opened a conversation, or reopened a resolved one."

    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    number_id: uuid.UUID
    opened_at: datetime


class ConversationAssigned(PublicData):
    public_type = "conversation.assigned"
    description = "A conversation got (or lost) an assignee and/or a department."

    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    assignee_id: uuid.UUID | None
    department_id: uuid.UUID | None
    assigned_by: uuid.UUID | None
    at: datetime


class ConversationStatusChanged(PublicData):
    public_type = "conversation.status_changed"
    description = "A conversation moved in its lifecycle (open, pending, resolved, ...)."

    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    old_status: str
    new_status: str
    changed_by: uuid.UUID | None
    at: datetime


class ContactCreated(PublicData):
    public_type = "contact.created"
    description = "A WhatsApp user wrote for the first time, or a contact was created."

    contact_id: uuid.UUID
    wa_id: str | None
    name: str | None
    phone: str | None


class ContactUpdated(PublicData):
    public_type = "contact.updated"
    description = "A contact's name or phone changed."

    contact_id: uuid.UUID
    name: str | None
    phone: str | None
    changed: list[str]


class EndpointTest(PublicData):
    public_type = "endpoint.test"
    description = "Sent by POST /v1/webhook-endpoints/{id}/test; never subscribed to."

    endpoint_id: uuid.UUID
    message: str


#: Everything an endpoint may subscribe to (``endpoint.test`` is sent on request only).
SUBSCRIBABLE: tuple[type[PublicData], ...] = (
    MessageReceived,
    MessageSent,
    MessageDelivered,
    MessageRead,
    MessageFailed,
    ConversationOpened,
    ConversationAssigned,
    ConversationStatusChanged,
    ContactCreated,
    ContactUpdated,
)
_ALL: tuple[type[PublicData], ...] = (*SUBSCRIBABLE, EndpointTest)
CATALOG: dict[str, type[PublicData]] = {m.public_type: m for m in _ALL}
EVENT_TYPES: frozenset[str] = frozenset(m.public_type for m in SUBSCRIBABLE)


class PublicEvent(BaseModel):
    """The JSON body of every delivery."""

    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID = Field(description="The event's id: the same in every retry and replay")
    type: str
    version: int = API_VERSION
    created_at: datetime
    organization_id: uuid.UUID
    data: dict[str, Any]


def event_of(
    data: PublicData, *, event_id: uuid.UUID, organization_id: uuid.UUID, created_at: datetime
) -> PublicEvent:
    return PublicEvent(
        id=event_id,
        type=data.public_type,
        created_at=created_at,
        organization_id=organization_id,
        data=data.model_dump(mode="json"),
    )


def json_schema(model: type[PublicData]) -> dict[str, Any]:
    """The JSON Schema of a whole delivery body of ``model``'s type."""
    schema = PublicEvent.model_json_schema()
    schema["$id"] = f"https://pytake.dev/schemas/webhooks/{model.public_type}.v{API_VERSION}.json"
    schema["title"] = f"{model.public_type} v{API_VERSION}"
    schema["description"] = model.description
    schema["properties"]["type"] = {"const": model.public_type, "type": "string"}
    schema["properties"]["version"] = {"const": API_VERSION, "type": "integer"}
    schema["required"] = ["id", "type", "version", "created_at", "organization_id", "data"]
    data = model.model_json_schema()
    schema["$defs"] = {**schema.get("$defs", {}), **data.pop("$defs", {})}
    schema["properties"]["data"] = data
    if not schema["$defs"]:
        del schema["$defs"]
    return schema
