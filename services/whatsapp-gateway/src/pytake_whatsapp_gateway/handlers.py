"""Consumers: conversations asks the gateway to send a message."""

from __future__ import annotations

import uuid

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.consumer import Handler, PermanentError
from pytake_common.events import CloudEvent
from pytake_whatsapp_gateway.sending.sender import Outbound, Sender

SEND_REQUESTED = "pytake.conversations.message.send_requested.v1"


class TextBody(BaseModel):
    body: str
    preview_url: bool = False


class SendRequested(BaseModel):
    """What the gateway reads of conversations' event (tolerant: extra fields ignored)."""

    message_id: uuid.UUID
    organization_id: uuid.UUID
    conversation_id: uuid.UUID | None = None
    number_id: uuid.UUID
    phone_number_id: str | None = None
    to: str
    type: str = "text"
    text: TextBody | None = None
    context_wamid: str | None = None


def make_handlers(sender: Sender) -> dict[str, Handler]:
    async def on_send_requested(_session: AsyncSession, event: CloudEvent) -> None:
        data = event.parse_data(SendRequested)
        if event.tenantid != str(data.organization_id):
            raise PermanentError("tenantid and data.organization_id disagree")
        # The send runs in its own transactions (claim before the Graph call, then
        # the outcome); the consumer's transaction only keeps its inbox mark.
        await sender.send(
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
            )
        )

    return {SEND_REQUESTED: on_send_requested}
