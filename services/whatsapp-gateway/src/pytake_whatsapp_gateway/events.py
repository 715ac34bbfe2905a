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
TEMPLATE_TOPIC = "pytake.whatsapp.template"

#: A reply (``from``/``id`` of the quoted message) and/or a forward marker.
MessageContext = TypedDict(
    "MessageContext", {"from": str | None, "id": str | None, "forwarded": bool}
)


class WhatsAppEvent(EventData):
    """An event whatsapp-gateway publishes."""

    service = "whatsapp-gateway"


class NumberRegistered(WhatsAppEvent):
    event_type = "pytake.whatsapp.number.registered.v1"
    topic = NUMBER_TOPIC

    number_id: uuid.UUID
    organization_id: uuid.UUID
    phone_number_id: str
    waba_id: str
    display_phone_number: str
    #: Meta's messaging limit (``TIER_250`` ... ``TIER_UNLIMITED``) read when registering
    messaging_limit_tier: str | None = None
    #: the sends per second whatsapp-gateway paces the number at
    throughput_per_second: int = 80


class NumberUpdated(WhatsAppEvent):
    """A number's settings, status, quality or messaging tier changed (``changed`` names them)."""

    event_type = "pytake.whatsapp.number.updated.v1"
    topic = NUMBER_TOPIC

    number_id: uuid.UUID
    organization_id: uuid.UUID
    display_phone_number: str
    status: str
    quality_rating: str | None
    messaging_limit_tier: str | None
    changed: list[str]
    throughput_per_second: int = 80


class NumberRemoved(WhatsAppEvent):
    event_type = "pytake.whatsapp.number.removed.v1"
    topic = NUMBER_TOPIC

    number_id: uuid.UUID
    organization_id: uuid.UUID
    phone_number_id: str


class NumberDisconnected(WhatsAppEvent):
    """Meta refused the number's credentials (code 190): it needs a new access token."""

    event_type = "pytake.whatsapp.number.disconnected.v1"
    topic = NUMBER_TOPIC

    number_id: uuid.UUID
    organization_id: uuid.UUID
    reason: str


class ReceivedMedia(BaseModel):
    """The media of an image/audio/video/document/sticker message.

    ``download_path`` is the API path serving the bytes once the gateway fetched
    them from Meta (asynchronously, after intake); ``storage_key`` is null at intake.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    media_id: str
    mime_type: str | None
    sha256: str | None
    storage_key: str | None = None
    download_path: str | None = None
    #: Beyond the contract's minimum: a voice note (audio), the document's file name.
    voice: bool = False
    filename: str | None = None


class ReceivedReaction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The wamid of the message reacted to.
    message_id: str
    #: "" when the customer removed the reaction.
    emoji: str


class MessageReceived(WhatsAppEvent):
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
    media: ReceivedMedia | None = None
    reaction: ReceivedReaction | None = None
    #: Click-to-WhatsApp ad click (``source_url``, ``ctwa_clid``, ...), as Meta sent it.
    referral: dict[str, Any] | None = None


class StatusError(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: int | None
    title: str | None
    message: str | None
    details: str | None


class StatusPricing(BaseModel):
    """Meta's ``pricing`` object of a status webhook (what the message costs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``marketing``, ``utility``, ``authentication``, ``service``, ... (Meta's spelling)
    category: str | None = None
    billable: bool | None = None
    #: ``CBP`` (per conversation, before July 2025) or ``PMP`` (per message)
    pricing_model: str | None = None


class MessageStatusUpdated(WhatsAppEvent):
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
    #: null when Meta's status carried none (failed statuses never do)
    pricing: StatusPricing | None = None


class MessageSent(WhatsAppEvent):
    """Meta accepted the message (delivery arrives later as a status)."""

    event_type = "pytake.whatsapp.message.sent.v1"
    topic = MESSAGE_TOPIC

    message_id: uuid.UUID
    organization_id: uuid.UUID
    number_id: uuid.UUID
    wamid: str
    to: str
    sent_at: datetime


class MessageFailed(WhatsAppEvent):
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


class TemplateStatusChanged(WhatsAppEvent):
    """A template's review status or category changed (Meta's webhook or a sync)."""

    event_type = "pytake.whatsapp.template.status_changed.v1"
    topic = TEMPLATE_TOPIC

    template_id: uuid.UUID
    organization_id: uuid.UUID
    number_id: uuid.UUID | None
    waba_id: str
    name: str
    language: str
    category: str | None
    status: str
    components: list[dict[str, Any]]


class TemplateSynced(WhatsAppEvent):
    """A template as read from Meta by a sync or created through the API."""

    event_type = "pytake.whatsapp.template.synced.v1"
    topic = TEMPLATE_TOPIC

    template_id: uuid.UUID
    organization_id: uuid.UUID
    number_id: uuid.UUID | None
    waba_id: str
    name: str
    language: str
    category: str | None
    status: str
    components: list[dict[str, Any]]
