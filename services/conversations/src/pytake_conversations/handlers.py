"""Consumers of the WhatsApp gateway's message events.

``message.received`` appends the customer's message to the contact's active
conversation (opening or reopening one); ``message.sent`` / ``message.failed`` /
``message.status_updated`` move an outbound message's status forward only
(``statuses.py``, set-based). Every handler is idempotent against the same fact under
another event id.
"""

import contextlib
import functools
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import Field
from sqlalchemy import DateTime, Select, bindparam, exists, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import CTE

from pytake_common.consumer import Handler
from pytake_common.event_types import (
    WHATSAPP_MESSAGE_RECEIVED_V1,
)
from pytake_common.events import CloudEvent, TenantEventData
from pytake_common.outbox import STAGED_EVENT, emit, outbox_row
from pytake_conversations.domain import (
    INBOUND,
    OPEN,
    RECEIVED,
    RESOLVED,
    WAKES_ON_INBOUND,
    answers_survey,
    interactive_reply,
)
from pytake_conversations.events import (
    ConversationOpened,
    MessageAppended,
)
from pytake_conversations.inbox import (
    Row,
    auto_assign,
    change_status,
    conversation_data,
)
from pytake_conversations.outreach_replicas import outreach_handlers
from pytake_conversations.replicas import REPLICA_HANDLERS
from pytake_conversations.sla import SLA_HANDLERS
from pytake_conversations.starting import lock_active, previous_closed
from pytake_conversations.statuses import STATUS_HANDLERS
from pytake_conversations.stream import publish_many
from pytake_conversations.tables import contact_replicas, conversations, messages
from pytake_conversations.views import Message

log = logging.getLogger(__name__)


# --- what conversations reads of the gateway's events (tolerant readers) ---------------


class ReplyContext(TenantEventData):
    from_: str | None = Field(default=None, alias="from")
    id: str | None = None


class MessageReceived(TenantEventData):
    message_id: uuid.UUID
    wamid: str | None = None
    organization_id: uuid.UUID
    number_id: uuid.UUID
    phone_number_id: str
    contact_id: uuid.UUID
    wa_id: str | None = None
    user_id: str | None = None
    type: str
    text: str | None = None
    content: dict[str, Any] = Field(default_factory=dict)
    context: ReplyContext | None = None
    timestamp: datetime
    profile_name: str | None = None


def _ts(value: datetime) -> Any:
    return literal(value, DateTime(timezone=True))


# --- inbound ---------------------------------------------------------------------------


class _AlreadyStored(Exception):
    """The message is already in a conversation: undo everything this delivery did."""


async def on_message_received(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(MessageReceived)
    org = data.organization_id
    conversation = await _lock_active(session, org, data)
    if conversation is not None:
        # The common case needs no savepoint: nothing is written before the message
        # insert (on its id, or its wamid in this organization) decides whether the
        # message is new, and that statement touches the conversation only if it is.
        with contextlib.suppress(_AlreadyStored):
            await _append_inbound(session, org, data, conversation, created=False)
        return
    try:
        # A conversation is opened first: in a savepoint, so that the same message
        # under another event id, or a concurrent delivery that won the insert, leaves
        # no trace of this one (no conversation opened, no events).
        async with session.begin_nested():
            conversation, created = await _open_conversation(session, org, data)
            await _append_inbound(session, org, data, conversation, created)
    except _AlreadyStored:
        return


async def _append_inbound(
    session: AsyncSession, org: uuid.UUID, data: MessageReceived, conversation: Row, created: bool
) -> None:
    reply = interactive_reply(data.type, data.content)
    # A CSAT rating leaves a resolved conversation resolved (nothing for an agent to do).
    survey_answer = answers_survey(conversation["status"], reply)
    reopened = conversation["status"] == RESOLVED and not survey_answer
    wakes = conversation["status"] in WAKES_ON_INBOUND and not survey_answer
    # The common case (an open conversation) updates it in the insert's statement.
    stored, updated = await _insert_message(session, org, conversation["id"], data, not wakes)
    frames: list[tuple[str, dict[str, Any]]] = []
    row: Row
    if wakes:
        # The customer wrote: a resolved conversation reopens, a pending (snoozed or
        # waiting-for-customer) one wakes up.
        values = _conversation_values(_ts(data.timestamp), data.wa_id, data.user_id)
        row = await change_status(session, org, conversation, OPEN, by=None, extra=values)
    else:
        assert updated is not None
        row = updated
        kind = "conversation.created" if created else "conversation.updated"
        frames.append((kind, {"conversation": conversation_data(row)}))
    if created:
        await publish_many(session, org, frames)  # before the assignment's own frames
        frames = []
        row = await auto_assign(session, org, row)
    if created or reopened:
        opened = ConversationOpened(
            conversation_id=conversation["id"],
            organization_id=org,
            contact_id=data.contact_id,
            number_id=data.number_id,
            opened_at=conversation["created_at"] if created else row["updated_at"],
            previous_conversation_id=conversation["previous_conversation_id"],
        )
        await emit(session, opened, conversation["id"], org)
    appended = MessageAppended(
        message_id=data.message_id,
        organization_id=org,
        conversation_id=conversation["id"],
        contact_id=data.contact_id,
        text=data.text,
        reply=reply,
        direction=INBOUND,
        type=data.type,
        created_at=stored["created_at"],
    )
    frames.append(("message.created", {"message": Message.of(stored).model_dump(mode="json")}))
    event = CloudEvent.of(appended, subject=data.message_id, tenant_id=org)
    also: list[tuple[CTE, Mapping[str, Any]]] = [(STAGED_EVENT, outbox_row(event))]
    if data.profile_name:
        also.append(
            (
                _PROFILE_NAME,
                {"contact_id": data.contact_id, "contact_org": org, "name": data.profile_name},
            )
        )
    # The stream frames, the Kafka event and the profile name: one round trip.
    await publish_many(session, org, frames, with_=also)


#: The customer's WhatsApp profile name, unless contacts' own events gave one already.
_PROFILE_NAME: CTE = (
    pg_insert(contact_replicas)
    .values(
        id=bindparam("contact_id"),
        organization_id=bindparam("contact_org"),
        name=bindparam("name"),
    )
    .on_conflict_do_nothing()
    .cte("profile_name")
)


def _conversation_values(timestamp: Any, wa_id: Any, user_id: Any) -> dict[str, Any]:
    """What an inbound message changes in its conversation (values or bound parameters)."""
    values: dict[str, Any] = {
        # GREATEST ignores NULLs: the first inbound message sets it
        "last_inbound_at": func.greatest(conversations.c.last_inbound_at, timestamp),
        # the message's created_at: now(), the transaction's time
        "last_message_at": func.greatest(conversations.c.last_message_at, func.now()),
        "unread_count": conversations.c.unread_count + 1,
    }
    if wa_id is not None:
        values["wa_id"] = wa_id
    if user_id is not None:
        values["user_id"] = user_id
    return values


async def _insert_message(
    session: AsyncSession,
    org: uuid.UUID,
    conversation_id: uuid.UUID,
    data: MessageReceived,
    update_conversation: bool,
) -> tuple[Row, Row | None]:
    """Store the message (raise :class:`_AlreadyStored` if it is not new) and, if
    ``update_conversation``, update its (locked) conversation in the same statement when
    the message was new; the stored message and updated conversation rows."""
    statement = _insert_message_statement(update_conversation, bool(data.wa_id), bool(data.user_id))
    params = {
        "message_id": data.message_id,
        "org": org,
        "conversation_id": conversation_id,
        "message_type": data.type,
        "message_text": data.text,
        "message_content": data.content,
        "message_wamid": data.wamid,
        "message_context_wamid": data.context.id if data.context else None,
        "status_at": data.timestamp,
        "meta_timestamp": data.timestamp,
        "inbound_at": data.timestamp,
        "conversation_wa_id": data.wa_id,
        "conversation_user_id": data.user_id,
        "conversation_key": conversation_id,
        "conversation_org": org,
    }
    found = (await session.execute(statement, params)).mappings().first()
    if found is None:
        raise _AlreadyStored
    stored = {c.name: found[f"m_{c.name}"] for c in messages.c}
    if not update_conversation:
        return stored, None
    return stored, {c.name: found[f"c_{c.name}"] for c in conversations.c}


@functools.cache
def _insert_message_statement(update_conversation: bool, wa_id: bool, user_id: bool) -> Select[Any]:
    """Built once per shape (construction costs more client CPU than the round trip);
    every parameter is used once."""
    new = (
        pg_insert(messages)
        .values(
            id=bindparam("message_id"),
            organization_id=bindparam("org"),
            conversation_id=bindparam("conversation_id"),
            direction=INBOUND,
            type=bindparam("message_type"),
            text=bindparam("message_text"),
            content=bindparam("message_content"),
            wamid=bindparam("message_wamid"),
            context_wamid=bindparam("message_context_wamid"),
            status=RECEIVED,
            status_at=bindparam("status_at"),
            meta_timestamp=bindparam("meta_timestamp"),
        )
        .on_conflict_do_nothing()  # same id, or same wamid in this organization
        .returning(*messages.c)
        .cte("new_message")
    )
    columns = [new.c[c.name].label(f"m_{c.name}") for c in messages.c]
    if not update_conversation:
        return select(*columns).select_from(new)
    values = _conversation_values(
        bindparam("inbound_at", type_=DateTime(timezone=True)),
        bindparam("conversation_wa_id", type_=conversations.c.wa_id.type) if wa_id else None,
        bindparam("conversation_user_id", type_=conversations.c.user_id.type) if user_id else None,
    )
    changed = (
        update(conversations)
        .where(
            conversations.c.id == bindparam("conversation_key"),
            conversations.c.organization_id == bindparam("conversation_org"),
            exists(select(new.c.id)),
        )
        .values(updated_at=func.now(), **values)
        .returning(*conversations.c)
        .cte("changed_conversation")
    )
    columns += [changed.c[c.name].label(f"c_{c.name}") for c in conversations.c]
    return select(*columns).select_from(new.outerjoin(changed, literal(True)))


async def _lock_active(session: AsyncSession, org: uuid.UUID, data: MessageReceived) -> Row | None:
    """The contact's active conversation on this number, locked; None if there is none."""
    return await lock_active(session, org, data.contact_id, data.number_id)


async def _open_conversation(
    session: AsyncSession, org: uuid.UUID, data: MessageReceived
) -> tuple[Row, bool]:
    """Open the contact's conversation on this number (none was active), or lock the
    one a concurrent delivery opened meanwhile.

    Race-safe: two deliveries for the same contact meet on the partial unique index
    (one active conversation per organization, contact and number); the loser's
    insert does nothing and it locks the winner's row instead.
    """
    for _ in range(5):
        created = (
            (
                await session.execute(
                    pg_insert(conversations)
                    .values(
                        id=uuid.uuid4(),
                        organization_id=org,
                        contact_id=data.contact_id,
                        number_id=data.number_id,
                        phone_number_id=data.phone_number_id,
                        wa_id=data.wa_id,
                        user_id=data.user_id,
                        status=OPEN,
                        previous_conversation_id=previous_closed(
                            org, data.contact_id, data.number_id
                        ),
                    )
                    .on_conflict_do_nothing()
                    .returning(*conversations.c)
                )
            )
            .mappings()
            .first()
        )
        if created is not None:
            return created, True
        row = await _lock_active(session, org, data)
        if row is not None:
            return row, False
    raise RuntimeError(f"could not open a conversation for contact {data.contact_id}")


HANDLERS: dict[str, Handler] = {
    WHATSAPP_MESSAGE_RECEIVED_V1: on_message_received,
    # set-based: a batch's statuses of an organization in a few statements
    **STATUS_HANDLERS,
    **REPLICA_HANDLERS,
    **outreach_handlers(REPLICA_HANDLERS),
    **SLA_HANDLERS,
}
