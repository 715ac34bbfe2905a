"""Consumers: conversations asks the gateway to send a message, or to mark one read."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.consumer import Handler
from pytake_common.event_types import (
    CONVERSATIONS_MESSAGE_READ_REQUESTED_V1,
    CONVERSATIONS_MESSAGE_SEND_REQUESTED_V1,
)
from pytake_common.events import CloudEvent, TenantEventData
from pytake_whatsapp_gateway.sending.dispatcher import enqueue
from pytake_whatsapp_gateway.sending.reads import ReadRequest, mark_read
from pytake_whatsapp_gateway.sending.sender import Outbound, Sender


class TextBody(TenantEventData):
    body: str
    preview_url: bool = False


class SendRequested(TenantEventData):
    """What the gateway reads of conversations' event (tolerant: extra fields ignored)."""

    message_id: uuid.UUID
    organization_id: uuid.UUID
    conversation_id: uuid.UUID | None = None
    number_id: uuid.UUID
    phone_number_id: str | None = None
    to: str
    type: str = "text"
    text: TextBody | None = None
    #: Meta's inner object for every type but text.
    payload: dict[str, Any] | None = None
    context_wamid: str | None = None
    priority: str = "interactive"


class ReadRequested(TenantEventData):
    organization_id: uuid.UUID
    conversation_id: uuid.UUID | None = None
    number_id: uuid.UUID
    phone_number_id: str | None = None
    wamid: str
    message_id: uuid.UUID | None = None


def make_handlers(sender: Sender) -> dict[str, Handler]:
    async def on_send_requested(session: AsyncSession, event: CloudEvent) -> None:
        data = event.parse_data(SendRequested)
        # Only recorded here (same transaction as the inbox mark); the dispatcher
        # sends it, so a paced number never holds up the partition.
        await enqueue(
            session,
            Outbound(
                message_id=data.message_id,
                organization_id=data.organization_id,
                conversation_id=data.conversation_id,
                number_id=data.number_id,
                to=data.to,
                type=data.type,
                text_body=data.text.body if data.text else None,
                preview_url=data.text.preview_url if data.text else False,
                context_wamid=data.context_wamid,
                payload=data.payload,
                priority=data.priority,
            ),
        )

    async def on_read_requested(session: AsyncSession, event: CloudEvent) -> None:
        data = event.parse_data(ReadRequested)
        await mark_read(
            session,
            sender,
            ReadRequest(
                organization_id=data.organization_id, number_id=data.number_id, wamid=data.wamid
            ),
        )

    return {
        CONVERSATIONS_MESSAGE_SEND_REQUESTED_V1: on_send_requested,
        CONVERSATIONS_MESSAGE_READ_REQUESTED_V1: on_read_requested,
    }
