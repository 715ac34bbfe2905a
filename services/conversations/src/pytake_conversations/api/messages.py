"""Message history, agent replies of every WhatsApp type, and private notes."""

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.errors import (
    InvalidInput,
    NotFound,
    OrganizationSuspended,
    UnprocessableState,
)
from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, fingerprint, idempotent
from pytake_common.outbox import emit
from pytake_common.pagination import ROW_ID, TIMESTAMP, keyset
from pytake_common.rawpg import TenantReads
from pytake_common.security import READERS, Principal, Reader, Worker, authorize
from pytake_common.strict import StrictParams, Unusual, read_query
from pytake_common.web import FastPathRoute, fast_path
from pytake_conversations.api.deps import (
    DB,
    Limit,
    Organizations,
    Reads,
    WindowHours,
    reads_of,
)
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
from pytake_conversations.outbound import NoteInput, SendMessage
from pytake_conversations.senders import Sender
from pytake_conversations.tables import contact_replicas, conversations, messages
from pytake_conversations.views import MESSAGE_COLUMNS, Message, message_dict, page_json

#: a conversation's history, by (created_at, id)
HISTORY = keyset("messages", TIMESTAMP, ROW_ID)

router = APIRouter(prefix="/v1/conversations", tags=["messages"], route_class=FastPathRoute)
MONTHLY_LIMIT = "monthly_business_messages"


class MessagePage(BaseModel):
    items: list[Message]
    next_cursor: str | None
    #: with ``before``: whether older messages remain
    has_more: bool = False


CONVERSATION_EXISTS = "SELECT 1 FROM conversations WHERE id = $1 AND organization_id = $2"
ANCHOR = (
    "SELECT created_at FROM messages"
    " WHERE id = $1 AND organization_id = $2 AND conversation_id = $3"
)


async def _list_messages_fast(request: Request) -> Response | None:
    """``list_messages`` without FastAPI's dependency solving, for plain requests."""
    try:
        (args,) = read_query(request, HISTORY_PARAMS)
    except Unusual:
        return None
    principal = await authorize(request, READERS)
    return await history_page(reads_of(request), principal, **args)


@router.get("/{conversation_id}/messages", response_model=MessagePage)
@fast_path(_list_messages_fast)
async def list_messages(
    conversation_id: uuid.UUID,
    principal: Reader,
    reads: Reads,
    limit: Limit = 50,
    cursor: str | None = None,
    before: Annotated[uuid.UUID | None, Query(description="a message id: older ones")] = None,
    after: Annotated[uuid.UUID | None, Query(description="a message id: newer ones")] = None,
    latest: Annotated[bool, Query(description="the newest page")] = False,
    include_notes: bool = True,
) -> Response:
    """The conversation's history, always oldest first in a page.

    Forward (default): from the start, ``next_cursor`` pages on; ``after=<message id>``
    starts after a message. Backward: ``latest=true`` gives the newest page and
    ``before=<message id>`` the page older than a message (``has_more`` tells if more
    remain) — what a chat window scrolling up needs.
    """
    return await history_page(
        reads, principal, conversation_id, limit, cursor, before, after, latest, include_notes
    )


#: the history's fast path's reading of the path (conversation_id) and the query
HISTORY_PARAMS = StrictParams.of(list_messages, path=("conversation_id",))


async def history_page(
    reads: TenantReads,
    principal: Principal,
    conversation_id: uuid.UUID,
    limit: int,
    cursor: str | None,
    before: uuid.UUID | None,
    after: uuid.UUID | None,
    latest: bool,
    include_notes: bool,
) -> Response:
    if sum(x is not None and x is not False for x in (cursor, before, after, latest)) > 1:
        raise InvalidInput("use only one of cursor, before, after, latest")
    org = principal.organization_id
    keyset = HISTORY.decode(cursor) if cursor else None
    backward = before is not None or latest
    conditions = ["organization_id = $1", "conversation_id = $2"]
    if not include_notes:
        conditions.append(f"direction <> '{NOTE}'")
    async with reads.connection(org) as conn:

        async def check_conversation() -> None:
            if await conn.fetchval(CONVERSATION_EXISTS, conversation_id, org) is None:
                raise NotFound("conversation not found")

        anchor_id = before or after
        if anchor_id is not None and keyset is None:
            at = await conn.fetchval(ANCHOR, anchor_id, org, conversation_id)
            if at is None:
                await check_conversation()
                raise NotFound("message not found in this conversation")
            keyset = (at, anchor_id)
        args: list[Any] = [org, conversation_id]
        if keyset is not None:
            conditions.append("(created_at, id) " + ("<" if before else ">") + " ($3, $4)")
            args += keyset
        order = "DESC" if backward else "ASC"
        sql = (
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(conditions)}"  # noqa: S608
            # the table's columns: a bare "id" would be the selected id::text
            f" ORDER BY messages.created_at {order}, messages.id {order}"
            f" LIMIT ${len(args) + 1}"
        )
        rows = await conn.fetch(sql, *args, limit + 1)
        if not rows and anchor_id is None:
            # A message of this organization's conversation proves that it exists (and is
            # visible): the look-up is only needed for an empty page.
            await check_conversation()
    more = len(rows) > limit
    page = rows[:limit]
    if backward:
        page.reverse()
    next_cursor = None
    if more and not backward:
        next_cursor = HISTORY.encode((page[-1]["created_at"], page[-1]["id"]))
    body = {
        "items": [message_dict(r) for r in page],
        "next_cursor": next_cursor,
        "has_more": more,
    }
    # Serialised here (the hot path): response_model would validate every item again.
    return Response(page_json(body), media_type="application/json")


@router.post(
    "/{conversation_id}/messages",
    status_code=202,
    response_model=Message,
    responses={
        402: {"description": "monthly business messages of the plan used up"},
        403: {"description": "the organization is suspended (`organization_suspended`)"},
        404: {"description": "no such conversation in this organization"},
        409: {"description": "the conversation is closed (`conversation_closed`)"},
        422: {
            "description": "outside the 24-hour window (`outside_customer_service_window`), "
            "blocked contact (`contact_blocked`), Idempotency-Key reused with another body, "
            "or invalid input"
        },
    },
)
async def send_message(
    conversation_id: uuid.UUID,
    body: SendMessage,
    principal: Worker,
    db: DB,
    hours: WindowHours,
    directory: Organizations,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Queue a message (text, media, template, interactive, reaction, location): stored as
    ``pending`` and sent by whatsapp-gateway.

    Outside the customer-service window only templates may be sent. With
    ``Idempotency-Key`` a retry answers exactly what the first call answered and sends
    nothing twice; the key reused with a different body is refused (422).
    """
    org = principal.organization_id
    if directory is not None and directory.is_suspended(org):
        raise OrganizationSuspended("the organization is suspended; nothing can be sent")
    fp = fingerprint(
        "POST", f"/v1/conversations/{conversation_id}/messages", body.model_dump(mode="json")
    )
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, fp)
        answer = await idempotent(
            guard,
            202,
            lambda: request_send(
                session, Sender.of(principal), conversation_id, body, hours, directory
            ),
        )
    return answer.response()


async def _check_sendable(
    session: AsyncSession, conv: RowMapping, body: SendMessage, hours: float
) -> None:
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


async def _check_monthly_limit(session: AsyncSession, org: uuid.UUID, directory: Any) -> None:
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


async def _quoted_wamid(
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
    await _check_sendable(session, conv, body, hours)
    await _check_monthly_limit(session, org, directory)
    recipient = conv["wa_id"] or conv["user_id"]
    if not recipient:
        raise UnprocessableState("the conversation has no WhatsApp recipient")
    context_wamid = None
    if body.reply_to is not None:
        context_wamid = await _quoted_wamid(
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
            payload["message_id"] = await _quoted_wamid(
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


@router.post("/{conversation_id}/notes", status_code=201, response_model=Message)
async def add_note(
    conversation_id: uuid.UUID,
    body: NoteInput,
    principal: Worker,
    db: DB,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """A private note for the team: stored in the history, never sent to the customer."""
    org = principal.organization_id
    fp = fingerprint(
        "POST", f"/v1/conversations/{conversation_id}/notes", body.model_dump(mode="json")
    )
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, fp)

        async def write() -> Message:
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
                            text=body.body,
                            content={"type": "note", "note": {"body": body.body}},
                            status=INTERNAL,
                            status_at=func.now(),
                            sent_by=principal.user_id,
                            sender_type=principal.kind,
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

        answer = await idempotent(guard, 201, write)
    return answer.response()
