"""Events conversations publishes.

Topics: ``pytake.conversations.conversation`` (subject = conversation id) and
``pytake.conversations.message`` (subject = message id).
"""

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from pytake_common.events import EventData

CONVERSATION_TOPIC = "pytake.conversations.conversation"
MESSAGE_TOPIC = "pytake.conversations.message"


class ConversationsEvent(EventData):
    """An event conversations publishes."""

    service = "conversations"


class ConversationOpened(ConversationsEvent):
    """A conversation was opened by a customer's message or an agent's start, or a resolved
    one reopened."""

    event_type = "pytake.conversations.conversation.opened.v1"
    topic = CONVERSATION_TOPIC

    conversation_id: uuid.UUID
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    number_id: uuid.UUID
    opened_at: datetime
    #: the contact's closed conversation on this number that this new one follows
    previous_conversation_id: uuid.UUID | None = None
    #: the user who started it (``POST /v1/conversations``); null: the customer's message
    started_by: uuid.UUID | None = None


class InteractiveReply(BaseModel):
    """The customer's choice: an interactive button/list reply, or a template's quick-reply
    button (``button``: Meta's payload as ``id``, its text as ``title``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["button", "list"]
    id: str
    title: str


class MessageAppended(ConversationsEvent):
    """A message (inbound from the customer or outbound from an agent) joined a conversation."""

    event_type = "pytake.conversations.message.appended.v1"
    topic = MESSAGE_TOPIC

    message_id: uuid.UUID
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    #: who wrote an outbound message: ``user``, ``api_client``, ``automation``, ``campaign``
    #: (null for the customer's messages)
    sender_type: str | None = None
    #: the user, API client, automation rule/flow, or campaign
    sender_id: uuid.UUID | None = None
    #: the text of a text message (a media caption, a template's rendered body); for an
    #: interactive or quick-reply answer, the chosen option's title
    text: str | None = None
    reply: InteractiveReply | None = None
    direction: str
    type: str
    created_at: datetime
    #: a campaign's message: the campaign and its recipient (null for every other message)
    campaign_id: uuid.UUID | None = None
    recipient_id: uuid.UUID | None = None


class Pricing(BaseModel):
    """Meta's ``pricing`` of a status webhook, as whatsapp-gateway passed it on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``marketing``, ``utility``, ``authentication``, ``service``... (Meta's spelling)
    category: str | None = None
    billable: bool | None = None
    #: ``CBP`` (per conversation) or ``PMP`` (per message)
    pricing_model: str | None = None


class MessageStatusChanged(ConversationsEvent):
    """An outbound message's delivery status moved forward (sent, delivered, read, failed...)."""

    event_type = "pytake.conversations.message.status_changed.v1"
    topic = MESSAGE_TOPIC

    message_id: uuid.UUID
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    status: str
    error_code: int | None
    error_detail: str | None
    at: datetime
    #: what Meta charges for the message, when the status that moved it said so
    pricing: Pricing | None = None


class TextBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    body: str
    preview_url: bool


class MessageSendRequested(ConversationsEvent):
    """An agent's message is stored as pending and must be sent through WhatsApp.

    Subject and key: the conversation (not the message), so the requests of one
    conversation are consumed, queued and sent in the order they were made."""

    event_type = "pytake.conversations.message.send_requested.v1"
    topic = MESSAGE_TOPIC

    message_id: uuid.UUID
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    number_id: uuid.UUID
    phone_number_id: str
    to: str
    #: text, image, audio, video, document, sticker, template, interactive, reaction, location
    type: str
    #: the message for type ``text``; other types carry an empty body here (kept non-null
    #: for consumers of the first schema) and their content in ``payload``
    text: TextBody = TextBody(body="", preview_url=False)
    context_wamid: str | None
    requested_by: uuid.UUID
    #: for every type but text: exactly the inner object WhatsApp expects under the
    #: message's type key, e.g. for template ``{name, language: {code}, components}``
    payload: dict[str, Any] | None = None
    #: whatsapp-gateway's send queue serves a number's ``interactive`` requests (agents,
    #: API clients) before ``automation`` ones, and those before ``campaign`` ones
    priority: Literal["interactive", "automation", "campaign"] = "interactive"
    #: a campaign's message: the campaign and its recipient
    campaign_id: uuid.UUID | None = None
    recipient_id: uuid.UUID | None = None


class MessageRefused(ConversationsEvent):
    """A campaign's recipient could not be sent its message (nothing was stored or sent).

    Subject: the recipient id. ``code`` is the stable problem code ``POST /v1/conversations``
    would answer (``contact_blocked``, ``contact_erased``, ``consent_required``,
    ``template_not_approved``, ``template_parameter_missing``, ``number_unavailable``...).
    """

    event_type = "pytake.conversations.message.refused.v1"
    topic = MESSAGE_TOPIC

    organization_id: uuid.UUID
    campaign_id: uuid.UUID
    recipient_id: uuid.UUID
    contact_id: uuid.UUID
    number_id: uuid.UUID
    code: str
    detail: str


class ConversationStatusChanged(ConversationsEvent):
    """A conversation moved in its lifecycle (by an agent, the customer's message or a timer)."""

    event_type = "pytake.conversations.conversation.status_changed.v1"
    topic = CONVERSATION_TOPIC

    conversation_id: uuid.UUID
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    old_status: str
    new_status: str
    #: the agent who changed it; null when the customer's message or the snooze timer did
    changed_by: uuid.UUID | None
    at: datetime
    #: ``automation`` when automation asked for it (``actor_id``: the rule or flow), so a
    #: rule never re-triggers itself; null for people and timers
    actor_type: str | None = None
    actor_id: uuid.UUID | None = None


class ConversationPriorityChanged(ConversationsEvent):
    """A conversation's priority changed (automation's SLA due times depend on it)."""

    event_type = "pytake.conversations.conversation.priority_changed.v1"
    topic = CONVERSATION_TOPIC

    conversation_id: uuid.UUID
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    old_priority: str
    new_priority: str
    #: the agent who changed it; null for automation
    changed_by: uuid.UUID | None
    at: datetime
    #: ``automation`` when automation asked for it (``actor_id``: the rule or flow)
    actor_type: str | None = None
    actor_id: uuid.UUID | None = None


class ConversationAssigned(ConversationsEvent):
    """A conversation got an assignee and/or department (or lost them)."""

    event_type = "pytake.conversations.conversation.assigned.v1"
    topic = CONVERSATION_TOPIC

    conversation_id: uuid.UUID
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    assignee_id: uuid.UUID | None
    department_id: uuid.UUID | None
    #: null for automatic (round-robin) assignment
    assigned_by: uuid.UUID | None
    at: datetime
    #: ``automation`` when automation asked for it (``actor_id``: the rule or flow), so a
    #: rule never re-triggers itself; null for people and timers
    actor_type: str | None = None
    actor_id: uuid.UUID | None = None


class MessageReadRequested(ConversationsEvent):
    """An agent read a customer's message: whatsapp-gateway marks it read on WhatsApp."""

    event_type = "pytake.conversations.message.read_requested.v1"
    topic = MESSAGE_TOPIC

    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    number_id: uuid.UUID
    phone_number_id: str
    wamid: str
    message_id: uuid.UUID
