"""Consumers: contacts from inbound WhatsApp messages, the users replica, the timeline.

Inbound messages are never refused (no plan limit, blocked contacts included): the
customer wrote, so the contact exists.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.auth_users import user_handlers
from pytake_common.consumer import Handler, PermanentError, SetHandler
from pytake_common.event_types import (
    CONVERSATIONS_MESSAGE_APPENDED_V1,
    WHATSAPP_MESSAGE_RECEIVED_V1,
)
from pytake_common.events import CloudEvent, TenantEventData
from pytake_common.outbox import emit
from pytake_contacts import inbound
from pytake_contacts.automation_actions import AUTOMATION_HANDLERS
from pytake_contacts.domain import PROFILE, clean_name, phone_from_wa_id
from pytake_contacts.events import ContactCreated, ContactUpdated
from pytake_contacts.opt_outs import OPT_OUT_HANDLERS
from pytake_contacts.tables import contacts, users
from pytake_contacts.timeline import TIMELINE_HANDLERS, Appended


class MessageReceived(TenantEventData):
    """What contacts reads of the gateway's event (tolerant reader: extra fields ignored)."""

    contact_id: uuid.UUID
    organization_id: uuid.UUID
    wa_id: str | None = None
    user_id: str | None = None
    profile_name: str | None = None
    timestamp: datetime


async def on_message_received(session: AsyncSession, event: CloudEvent) -> None:
    await apply_received(session, event.parse_data(MessageReceived))


async def apply_received(session: AsyncSession, data: MessageReceived) -> None:
    """One inbound message: the contact it names exists afterwards, its profile name and
    last interaction moved on (:mod:`pytake_contacts.inbound` applies a batch at once)."""
    if not data.wa_id and not data.user_id:
        raise PermanentError("message.received without wa_id or user_id")
    org = data.organization_id
    name = clean_name(data.profile_name)
    # A known customer is the common case: find (and lock) them first, and insert
    # only when absent (one statement less per message than insert-first).
    if await _update_existing(session, data, name):
        return
    phone = phone_from_wa_id(data.wa_id)
    created = (
        await session.execute(
            pg_insert(contacts)
            .values(
                id=data.contact_id,
                organization_id=org,
                wa_id=data.wa_id,
                user_id=data.user_id,
                name=name,
                name_source=PROFILE,
                phone=phone,
                last_interaction_at=data.timestamp,
            )
            # Any unique key (id, wa_id, user_id) already taken means the contact exists.
            .on_conflict_do_nothing()
            .returning(contacts.c.id)
        )
    ).first()
    if created is not None:
        await emit(session, first_seen(data, name, phone), data.contact_id)
        return
    # Created meanwhile by a concurrent delivery (another identifier or the same id).
    if not await _update_existing(session, data, name):
        # the conflicting row vanished (deleted meanwhile): let the consumer retry
        raise RuntimeError(f"contact {data.contact_id} conflicted but cannot be found")


def first_seen(data: MessageReceived, name: str | None, phone: str | None) -> ContactCreated:
    """The event of a contact created by the customer's first message."""
    return ContactCreated(
        contact_id=data.contact_id,
        organization_id=data.organization_id,
        wa_id=data.wa_id,
        user_id=data.user_id,
        name=name,
        phone=phone,
        attributes={},
    )


async def _update_existing(session: AsyncSession, data: MessageReceived, name: str | None) -> bool:
    """Apply the message to the contact it names, if one exists; False when none does."""
    org = data.organization_id
    keys = [contacts.c.id == data.contact_id]
    if data.wa_id:
        keys.append(contacts.c.wa_id == data.wa_id)
    if data.user_id:
        keys.append(contacts.c.user_id == data.user_id)
    row = (
        (
            await session.execute(
                select(contacts)
                .where(contacts.c.organization_id == org, or_(*keys))
                .order_by((contacts.c.id == data.contact_id).desc())
                .limit(1)
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return False
    if row["erased_at"] is not None:
        await _recreate_erased(session, data, name, row["id"])
        return True

    values: dict[str, Any] = {}
    changed: list[str] = []
    if row["deleted_at"] is not None:  # deleted by an agent, and the customer wrote again
        values["deleted_at"] = None
        changed.append("deleted_at")
    last = row["last_interaction_at"]
    newest = last is None or data.timestamp >= last
    # The profile name follows the customer's latest message, unless an agent named them.
    if row["name_source"] == PROFILE and name and name != row["name"] and newest:
        values["name"] = name
        changed.append("name")
    # A contact first seen by one identifier learns the other one (never overwritten).
    if data.wa_id and row["wa_id"] is None and not await _taken(session, org, "wa_id", data.wa_id):
        values["wa_id"] = data.wa_id
        phone = phone_from_wa_id(data.wa_id)
        if phone != row["phone"]:
            values["phone"] = phone
            changed.append("phone")
    if (
        data.user_id
        and row["user_id"] is None
        and not await _taken(session, org, "user_id", data.user_id)
    ):
        values["user_id"] = data.user_id
    if last is None or data.timestamp > last:
        values["last_interaction_at"] = data.timestamp
    if not values:
        return True
    updated = (
        (
            await session.execute(
                update(contacts)
                .where(contacts.c.id == row["id"], contacts.c.organization_id == org)
                .values(**values, updated_at=func.now())
                .returning(contacts.c.name, contacts.c.phone)
            )
        )
        .mappings()
        .one()
    )
    if changed:
        payload = ContactUpdated(
            contact_id=row["id"],
            organization_id=org,
            name=updated["name"],
            phone=updated["phone"],
            changed=changed,
        )
        await emit(session, payload, row["id"])
    return True


async def _recreate_erased(
    session: AsyncSession, data: MessageReceived, name: str | None, contact_id: uuid.UUID
) -> None:
    """An erased customer wrote again: a new contact (same derived id), nothing old back."""
    org = data.organization_id
    phone = phone_from_wa_id(data.wa_id)
    await session.execute(
        update(contacts)
        .where(contacts.c.id == contact_id, contacts.c.organization_id == org)
        .values(
            wa_id=data.wa_id,
            user_id=data.user_id,
            name=name,
            name_source=PROFILE,
            phone=phone,
            last_interaction_at=data.timestamp,
            deleted_at=None,
            erased_at=None,
            created_at=func.now(),
            updated_at=func.now(),
        )
    )
    payload = ContactCreated(
        contact_id=contact_id,
        organization_id=org,
        wa_id=data.wa_id,
        user_id=data.user_id,
        name=name,
        phone=phone,
    )
    await emit(session, payload, contact_id)


async def _taken(session: AsyncSession, org: uuid.UUID, column: str, value: str) -> bool:
    col = contacts.c[column]
    found = await session.scalar(
        select(exists().where(and_(contacts.c.organization_id == org, col == value)))
    )
    return bool(found)


HANDLERS: dict[str, Handler] = {
    **user_handlers(users),
    **TIMELINE_HANDLERS,
    **AUTOMATION_HANDLERS,
    **OPT_OUT_HANDLERS,
    # Set-based: a consumer batch's records of one organization in a few statements.
    WHATSAPP_MESSAGE_RECEIVED_V1: SetHandler(MessageReceived, inbound.on_messages_received),
    # after the batch's new contacts exist: their replies move them on
    CONVERSATIONS_MESSAGE_APPENDED_V1: SetHandler(Appended, inbound.on_appended_many, order=1),
}
