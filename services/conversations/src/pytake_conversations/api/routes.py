"""Conversations API: the inbox (list, read), message history, and agent replies."""

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select, tuple_, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.db import Database
from pytake_common.errors import NotFound, UnprocessableState
from pytake_common.events import CloudEvent
from pytake_common.idempotency import IdempotencyGuard, fingerprint
from pytake_common.outbox import add_event
from pytake_common.security import Principal, Reader, Worker
from pytake_common.web import request_db
from pytake_conversations.domain import (
    CLOSED,
    OUTBOUND,
    ConversationClosed,
    OutsideServiceWindow,
    ReplyTargetInvalid,
    window_closes_at,
)
from pytake_conversations.events import MessageAppended, MessageSendRequested, TextBody
from pytake_conversations.pagination import decode_cursor, encode_cursor
from pytake_conversations.tables import conversations, messages
from pytake_conversations.views import Conversation, Message

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
DB = Annotated[Database, Depends(request_db)]
Limit = Annotated[int, Query(ge=1, le=200)]
ConversationStatus = Literal["open", "pending", "resolved", "closed"]
MAX_TEXT = 4096


class ConversationPage(BaseModel):
    items: list[Conversation]
    next_cursor: str | None


class MessagePage(BaseModel):
    items: list[Message]
    next_cursor: str | None


class TextInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=MAX_TEXT)
    preview_url: bool = False

    @field_validator("body")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("body must not be blank")
        return value


class SendMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: TextInput
    #: id of a message of this conversation to quote (it must have a WhatsApp id)
    reply_to: uuid.UUID | None = None


def _window_hours(request: Request) -> float:
    return float(getattr(request.app.state.settings, "service_window_hours", 24.0))


WindowHours = Annotated[float, Depends(_window_hours)]


async def _conversation(
    session: AsyncSession, org: uuid.UUID, conversation_id: uuid.UUID, *, lock: bool = False
) -> RowMapping:
    stmt = select(conversations).where(
        conversations.c.id == conversation_id, conversations.c.organization_id == org
    )
    if lock:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).mappings().first()
    if row is None:
        raise NotFound("conversation not found")
    return row


@router.get("", response_model=ConversationPage)
async def list_conversations(
    principal: Reader,
    db: DB,
    hours: WindowHours,
    status: Annotated[list[ConversationStatus] | None, Query()] = None,
    contact_id: uuid.UUID | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> ConversationPage:
    """Newest activity first (last message time, then id, both descending)."""
    org = principal.organization_id
    stmt = select(conversations).where(conversations.c.organization_id == org)
    if status:
        stmt = stmt.where(conversations.c.status.in_(status))
    if contact_id:
        stmt = stmt.where(conversations.c.contact_id == contact_id)
    if cursor:
        at, last_id = decode_cursor(cursor)
        stmt = stmt.where(
            tuple_(conversations.c.last_message_at, conversations.c.id) < tuple_(at, last_id)
        )
    stmt = stmt.order_by(conversations.c.last_message_at.desc(), conversations.c.id.desc())
    async with db.transaction(organization_id=org) as session:
        rows = (await session.execute(stmt.limit(limit + 1))).mappings().all()
    items = [Conversation.of(r, hours) for r in rows[:limit]]
    more = len(rows) > limit
    return ConversationPage(
        items=items,
        next_cursor=encode_cursor(items[-1].last_message_at, items[-1].id) if more else None,
    )


@router.get("/{conversation_id}", response_model=Conversation)
async def get_conversation(
    conversation_id: uuid.UUID, principal: Reader, db: DB, hours: WindowHours
) -> Conversation:
    async with db.transaction(organization_id=principal.organization_id) as session:
        row = await _conversation(session, principal.organization_id, conversation_id)
    return Conversation.of(row, hours)


@router.get("/{conversation_id}/messages", response_model=MessagePage)
async def list_messages(
    conversation_id: uuid.UUID,
    principal: Reader,
    db: DB,
    limit: Limit = 50,
    cursor: str | None = None,
) -> MessagePage:
    """The conversation's history, oldest first (created_at, then id)."""
    org = principal.organization_id
    stmt = select(messages).where(
        messages.c.organization_id == org, messages.c.conversation_id == conversation_id
    )
    if cursor:
        at, last_id = decode_cursor(cursor)
        stmt = stmt.where(tuple_(messages.c.created_at, messages.c.id) > tuple_(at, last_id))
    stmt = stmt.order_by(messages.c.created_at, messages.c.id).limit(limit + 1)
    async with db.transaction(organization_id=org) as session:
        await _conversation(session, org, conversation_id)
        rows = (await session.execute(stmt)).mappings().all()
    items = [Message.of(r) for r in rows[:limit]]
    more = len(rows) > limit
    return MessagePage(
        items=items,
        next_cursor=encode_cursor(items[-1].created_at, items[-1].id) if more else None,
    )


@router.post(
    "/{conversation_id}/messages",
    status_code=202,
    response_model=Message,
    responses={
        404: {"description": "no such conversation in this organization"},
        409: {"description": "the conversation is closed (`conversation_closed`)"},
        422: {
            "description": "outside the 24-hour window (`outside_customer_service_window`), "
            "Idempotency-Key reused with another body, or invalid input"
        },
    },
)
async def send_message(
    conversation_id: uuid.UUID,
    body: SendMessage,
    principal: Worker,
    db: DB,
    hours: WindowHours,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Queue a free-form text reply: stored as ``pending``, sent by whatsapp-gateway.

    With ``Idempotency-Key`` a retry answers exactly what the first call answered
    and sends nothing twice; the key reused with a different body is refused (422).
    """
    org = principal.organization_id
    fp = fingerprint(
        "POST", f"/v1/conversations/{conversation_id}/messages", body.model_dump(mode="json")
    )
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, fp)
        replay = await guard.claim()
        if replay is not None:
            status_code, answer = replay
            return JSONResponse(answer, status_code=status_code)
        message = await _request_send(session, principal, conversation_id, body, hours)
        answer = message.model_dump(mode="json")
        await guard.store(202, answer)
    return JSONResponse(answer, status_code=202)


async def _request_send(
    session: AsyncSession,
    principal: Principal,
    conversation_id: uuid.UUID,
    body: SendMessage,
    hours: float,
) -> Message:
    org = principal.organization_id
    conv = await _conversation(session, org, conversation_id, lock=True)
    if conv["status"] == CLOSED:
        raise ConversationClosed(
            "the conversation is closed; a new customer message opens a new one"
        )
    now = datetime.now(UTC)
    closes_at = window_closes_at(conv["last_inbound_at"], hours)
    if closes_at is None or now >= closes_at:
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
    recipient = conv["wa_id"] or conv["user_id"]
    if not recipient:
        raise UnprocessableState("the conversation has no WhatsApp recipient")
    context_wamid = None
    if body.reply_to is not None:
        quoted = (
            await session.execute(
                select(messages.c.wamid).where(
                    messages.c.id == body.reply_to,
                    messages.c.organization_id == org,
                    messages.c.conversation_id == conversation_id,
                )
            )
        ).first()
        if quoted is None:
            raise ReplyTargetInvalid("reply_to is not a message of this conversation")
        if quoted.wamid is None:
            raise ReplyTargetInvalid("reply_to has no WhatsApp id yet (not sent)")
        context_wamid = quoted.wamid

    message_id = uuid.uuid4()
    text = TextBody(body=body.text.body, preview_url=body.text.preview_url)
    content: dict[str, Any] = {"type": "text", "text": text.model_dump()}
    if context_wamid:
        content["context"] = {"message_id": context_wamid}
    row = (
        (
            await session.execute(
                messages.insert()
                .values(
                    id=message_id,
                    organization_id=org,
                    conversation_id=conversation_id,
                    direction=OUTBOUND,
                    type="text",
                    text=text.body,
                    content=content,
                    context_wamid=context_wamid,
                    status="pending",
                    status_at=func.now(),
                    sent_by=principal.user_id,
                )
                .returning(*messages.c)
            )
        )
        .mappings()
        .one()
    )
    await session.execute(
        update(conversations)
        .where(conversations.c.id == conversation_id, conversations.c.organization_id == org)
        .values(
            last_message_at=func.greatest(conversations.c.last_message_at, row["created_at"]),
            updated_at=func.now(),
        )
    )
    requested = MessageSendRequested(
        message_id=message_id,
        organization_id=org,
        conversation_id=conversation_id,
        number_id=conv["number_id"],
        phone_number_id=conv["phone_number_id"],
        to=recipient,
        type="text",
        text=text,
        context_wamid=context_wamid,
        requested_by=principal.user_id,
    )
    await add_event(
        session,
        CloudEvent.of(requested, service="conversations", subject=message_id, tenant_id=org),
    )
    appended = MessageAppended(
        message_id=message_id,
        organization_id=org,
        conversation_id=conversation_id,
        contact_id=conv["contact_id"],
        direction=OUTBOUND,
        type="text",
        created_at=row["created_at"],
    )
    await add_event(
        session, CloudEvent.of(appended, service="conversations", subject=message_id, tenant_id=org)
    )
    return Message.of(row)
