"""How recipients move after dispatch: from conversations' message and conversation events.

- ``message.send_requested`` with a ``recipient_id``: the message exists (``accepted``,
  with its message and conversation ids);
- ``message.status_changed``: ``sent`` / ``delivered`` / ``read`` / ``failed`` (Meta's code
  and reason, e.g. 131049 or 131050), never backwards; its ``pricing`` gives the cost;
- ``message.refused``: conversations could not make the message (``failed`` with its code);
- ``message.appended`` inbound in a conversation a recipient's message is in: ``replied``;
- ``conversation.opened`` started by a user: a business-initiated recipient of the number
  (the messaging limit counts it with campaigns' own sends).

Every update is guarded by the status order (:func:`rules.forward_from`), so a repeated
or late event changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_campaigns import rules
from pytake_campaigns.tables import initiations, recipients
from pytake_common import event_types as et
from pytake_common.consumer import Handler
from pytake_common.events import CloudEvent, TenantEventData

#: the timestamp column each status sets
STAMPS = {
    rules.ACCEPTED: "accepted_at",
    rules.SENT: "sent_at",
    rules.DELIVERED: "delivered_at",
    rules.READ: "read_at",
    rules.REPLIED: "replied_at",
    rules.FAILED: "failed_at",
}


async def _move(
    session: AsyncSession, org: uuid.UUID, where: Any, status: str, at: datetime, **values: Any
) -> None:
    r = recipients.c
    await session.execute(
        update(recipients)
        .where(r.organization_id == org, where, r.status.in_(rules.forward_from(status)))
        .values(status=status, updated_at=func.now(), **{STAMPS[status]: at}, **values)
    )


class SendRequested(TenantEventData):
    organization_id: uuid.UUID
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    recipient_id: uuid.UUID | None = None


async def on_send_requested(session: AsyncSession, event: CloudEvent) -> None:
    d = event.parse_data(SendRequested)
    if d.recipient_id is None:
        return  # an agent's or an automation's message
    await _link(session, d.organization_id, d.recipient_id, d.message_id, d.conversation_id)
    await _move(
        session, d.organization_id, recipients.c.id == d.recipient_id, rules.ACCEPTED, event.time
    )


async def _link(
    session: AsyncSession,
    org: uuid.UUID,
    recipient_id: uuid.UUID,
    message_id: uuid.UUID,
    conversation_id: uuid.UUID,
) -> None:
    r = recipients.c
    await session.execute(
        update(recipients)
        .where(r.organization_id == org, r.id == recipient_id)
        .values(
            message_id=func.coalesce(r.message_id, message_id),
            conversation_id=func.coalesce(r.conversation_id, conversation_id),
        )
    )


class Appended(TenantEventData):
    organization_id: uuid.UUID
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    direction: str
    created_at: datetime
    recipient_id: uuid.UUID | None = None


async def on_appended(session: AsyncSession, event: CloudEvent) -> None:
    d = event.parse_data(Appended)
    org = d.organization_id
    if d.recipient_id is not None:
        await _link(session, org, d.recipient_id, d.message_id, d.conversation_id)
        return
    if d.direction != "inbound":
        return
    r = recipients.c
    # a reply: the customer wrote after the campaign's message reached the conversation
    await _move(
        session,
        org,
        (r.conversation_id == d.conversation_id) & (r.dispatched_at <= d.created_at),
        rules.REPLIED,
        d.created_at,
    )


class Pricing(TenantEventData):
    category: str | None = None
    billable: bool | None = None


class StatusChanged(TenantEventData):
    organization_id: uuid.UUID
    message_id: uuid.UUID
    status: str
    error_code: int | None = None
    error_detail: str | None = None
    at: datetime
    pricing: Pricing | None = None


def status_handler(rates: dict[str, float]) -> Handler:
    async def on_status_changed(session: AsyncSession, event: CloudEvent) -> None:
        d = event.parse_data(StatusChanged)
        org, r = d.organization_id, recipients.c
        mine = r.message_id == d.message_id
        if d.pricing is not None and d.pricing.category:
            await session.execute(
                update(recipients)
                .where(r.organization_id == org, mine, r.pricing_category.is_(None))
                .values(
                    pricing_category=d.pricing.category.lower(),
                    billable=d.pricing.billable,
                    cost=rules.cost_of(d.pricing.category, d.pricing.billable, rates),
                )
            )
        if d.status not in (rules.SENT, rules.DELIVERED, rules.READ, rules.FAILED):
            return  # played, or a status campaigns does not track
        extra: dict[str, Any] = {}
        if d.status == rules.FAILED:
            extra = {
                "error_code": None if d.error_code is None else str(d.error_code),
                "error_detail": (d.error_detail or "")[:500] or None,
            }
        await _move(session, org, mine, d.status, d.at, **extra)

    return on_status_changed


class Refused(TenantEventData):
    organization_id: uuid.UUID
    recipient_id: uuid.UUID
    code: str
    detail: str | None = None


async def on_refused(session: AsyncSession, event: CloudEvent) -> None:
    d = event.parse_data(Refused)
    await _move(
        session,
        d.organization_id,
        recipients.c.id == d.recipient_id,
        rules.FAILED,
        event.time,
        error_code=d.code[:60],
        error_detail=(d.detail or "")[:500] or None,
    )


class Opened(TenantEventData):
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    number_id: uuid.UUID
    opened_at: datetime
    started_by: uuid.UUID | None = None


async def on_opened(session: AsyncSession, event: CloudEvent) -> None:
    d = event.parse_data(Opened)
    if d.started_by is None:
        return  # the customer wrote first: not business-initiated
    await session.execute(
        pg_insert(initiations)
        .values(
            organization_id=d.organization_id,
            number_id=d.number_id,
            contact_id=d.contact_id,
            at=d.opened_at,
            fact=f"conversation:{d.conversation_id}",
        )
        .on_conflict_do_nothing(index_elements=["fact"])
    )


def progress_handlers(rates: dict[str, float]) -> dict[str, Handler]:
    return {
        et.CONVERSATIONS_MESSAGE_SEND_REQUESTED_V1: on_send_requested,
        et.CONVERSATIONS_MESSAGE_APPENDED_V1: on_appended,
        et.CONVERSATIONS_MESSAGE_STATUS_CHANGED_V1: status_handler(rates),
        et.CONVERSATIONS_MESSAGE_REFUSED_V1: on_refused,
        et.CONVERSATIONS_CONVERSATION_OPENED_V1: on_opened,
    }
