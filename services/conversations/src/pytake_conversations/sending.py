"""Sending a message and writing a note: the rules (closed conversation, blocked contact,
the customer-service window, the plan's monthly messages, reply targets) and what a
send stores and tells, shared by the API and by starting a conversation
(:mod:`pytake_conversations.starting`: the API's and campaigns' sends).

Functions here run inside the caller's transaction and never commit.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.errors import UnprocessableState
from pytake_common.outbox import emit
from pytake_conversations.canned import render_canned
from pytake_conversations.domain import (
    CLOSED,
    INTERNAL,
    NOTE,
    OUTBOUND,
    ContactBlocked,
    ConversationClosed,
    OutsideServiceWindow,
    ReplyTargetInvalid,
    window_closes_at,
)
from pytake_conversations.events import MessageAppended, MessageSendRequested, TextBody
from pytake_conversations.inbox import (
    load_conversation,
    push_conversation,
    push_message,
    update_conversation,
)
from pytake_conversations.outbound import SendMessage
from pytake_conversations.senders import Sender
from pytake_conversations.tables import contact_replicas, conversations, messages
from pytake_conversations.views import Message

MONTHLY_LIMIT = "monthly_business_messages"


async def check_sendable(
    session: AsyncSession, conv: RowMapping, body: SendMessage, hours: float
) -> None:
    """Refuse a send to a closed conversation, a blocked contact, or (but a template)
    outside WhatsApp's customer-service window of ``hours``."""
    if conv["status"] == CLOSED:
        raise ConversationClosed(
            "the conversation is closed; a new customer message opens a new one"
        )
    blocked = await session.scalar(
        select(contact_replicas.c.blocked).where(
            contact_replicas.c.id == conv["contact_id"],
            contact_replicas.c.organization_id == conv["organization_id"],
        )
    )
    if blocked:
        raise ContactBlocked("the contact is blocked; unblock it to send messages")
    if body.type == "template":
        return  # approved templates may start a conversation at any time
    closes_at = window_closes_at(conv["last_inbound_at"], hours)
    if closes_at is None or datetime.now(UTC) >= closes_at:
        last = conv["last_inbound_at"]
        raise OutsideServiceWindow(
            (
                f"the customer last wrote at {last.isoformat()}, more than {hours:g} hours ago"
                if last
                else "the customer has not written in this conversation"
            )
            + "; outside the customer-service window only an approved template message "
            "can be sent (a template is needed)",
            last_inbound_at=last.isoformat() if last else None,
            window_closed_at=closes_at.isoformat() if closes_at else None,
        )


async def check_monthly_limit(session: AsyncSession, org: uuid.UUID, directory: Any) -> None:
    """Refuse (402) when the plan's business messages of this month are used up."""
    if directory is None or directory.limit(org, MONTHLY_LIMIT) is None:
        return
    used = await session.scalar(
        select(func.count())
        .select_from(messages)
        .where(
            messages.c.organization_id == org,
            messages.c.direction == OUTBOUND,
            messages.c.created_at >= func.date_trunc("month", func.now()),
        )
    )
    await directory.check_limit(org, MONTHLY_LIMIT, used=int(used or 0))


async def quoted_wamid(
    session: AsyncSession, org: uuid.UUID, conversation_id: uuid.UUID, ref: str, what: str
) -> str:
    """The wamid of a message of this conversation named by our id or by its wamid."""
    try:
        match = messages.c.id == uuid.UUID(ref)
    except ValueError:
        match = messages.c.wamid == ref
    quoted = (
        await session.execute(
            select(messages.c.wamid).where(
                match,
                messages.c.organization_id == org,
                messages.c.conversation_id == conversation_id,
                messages.c.direction != NOTE,
            )
        )
    ).first()
    if quoted is None:
        raise ReplyTargetInvalid(f"{what} is not a message of this conversation")
    if quoted.wamid is None:
        raise ReplyTargetInvalid(f"{what} has no WhatsApp id yet (not sent)")
    return str(quoted.wamid)


async def request_send(
    session: AsyncSession,
    sender: Sender,
    conversation_id: uuid.UUID,
    body: SendMessage,
    hours: float,
    directory: Any,
    *,
    preview: str | None = None,
) -> Message:
    """Store ``body`` as a pending message of the conversation and ask whatsapp-gateway to
    send it (``preview``: what the inbox shows instead of the type's default)."""
    org = sender.organization_id
    conv = await load_conversation(session, org, conversation_id, lock=True)
    await check_sendable(session, conv, body, hours)
    await check_monthly_limit(session, org, directory)
    recipient = conv["wa_id"] or conv["user_id"]
    if not recipient:
        raise UnprocessableState("the conversation has no WhatsApp recipient")
    context_wamid = None
    if body.reply_to is not None:
        context_wamid = await quoted_wamid(
            session, org, conversation_id, str(body.reply_to), "reply_to"
        )

    text = TextBody(body="", preview_url=False)
    payload: dict[str, Any] | None = None
    if body.type == "text":
        if body.text is not None:
            text = TextBody(body=body.text.body, preview_url=body.text.preview_url)
        else:
            assert body.canned_response_id is not None
            rendered = await render_canned(session, org, body.canned_response_id, conv, sender.id)
            text = TextBody(body=rendered, preview_url=False)
        content: dict[str, Any] = {"type": "text", "text": text.model_dump()}
        shown: str | None = text.body
    else:
        payload = body.whatsapp_object()
        if body.type == "reaction":
            payload["message_id"] = await quoted_wamid(
                session, org, conversation_id, payload["message_id"], "reaction.message_id"
            )
        content = {"type": body.type, body.type: payload}
        shown = preview or body.preview()
    if context_wamid:
        content["context"] = {"message_id": context_wamid}

    message_id = uuid.uuid4()
    row = (
        (
            await session.execute(
                messages.insert()
                .values(
                    id=message_id,
                    organization_id=org,
                    conversation_id=conversation_id,
                    direction=OUTBOUND,
                    type=body.type,
                    text=shown,
                    content=content,
                    context_wamid=context_wamid,
                    status="pending",
                    status_at=func.now(),
                    sent_by=sender.id,
                    sender_type=sender.type,
                    recipient_id=sender.recipient_id,
                )
                .returning(*messages.c)
            )
        )
        .mappings()
        .one()
    )
    updated = await update_conversation(
        session,
        org,
        conversation_id,
        last_message_at=func.greatest(conversations.c.last_message_at, row["created_at"]),
        first_response_at=func.coalesce(conv["first_response_at"], row["created_at"]),
        # the SLA cycle's first reply (a new cycle recomputes it: sla.py)
        sla_responded_at=func.coalesce(conv["sla_responded_at"], row["created_at"]),
    )
    await push_conversation(session, org, updated, "conversation.updated")
    requested = MessageSendRequested(
        message_id=message_id,
        organization_id=org,
        conversation_id=conversation_id,
        number_id=conv["number_id"],
        phone_number_id=conv["phone_number_id"],
        to=recipient,
        type=body.type,
        text=text,
        context_wamid=context_wamid,
        requested_by=sender.id,
        payload=payload,
        priority=sender.priority,
        campaign_id=sender.campaign_id,
        recipient_id=sender.recipient_id,
    )
    await emit(session, requested, conversation_id, org)  # one partition per conversation
    appended = MessageAppended(
        message_id=message_id,
        organization_id=org,
        conversation_id=conversation_id,
        contact_id=conv["contact_id"],
        sender_type=sender.type,
        sender_id=sender.id,
        text=shown,
        direction=OUTBOUND,
        type=body.type,
        created_at=row["created_at"],
        campaign_id=sender.campaign_id,
        recipient_id=sender.recipient_id,
    )
    await emit(session, appended, message_id, org)
    await push_message(session, org, row, "message.created")
    return Message.of(row)


async def add_note(
    session: AsyncSession, sender: Sender, conversation_id: uuid.UUID, text: str
) -> Message:
    """A private note for the team: stored in the history, never sent to the customer."""
    org = sender.organization_id
    await load_conversation(session, org, conversation_id, lock=True)
    row = (
        (
            await session.execute(
                messages.insert()
                .values(
                    id=uuid.uuid4(),
                    organization_id=org,
                    conversation_id=conversation_id,
                    direction=NOTE,
                    type="text",
                    text=text,
                    content={"type": "note", "note": {"body": text}},
                    status=INTERNAL,
                    status_at=func.now(),
                    sent_by=sender.id,
                    sender_type=sender.type,
                )
                .returning(*messages.c)
            )
        )
        .mappings()
        .one()
    )
    await update_conversation(session, org, conversation_id)
    await push_message(session, org, row, "message.created")
    return Message.of(row)
