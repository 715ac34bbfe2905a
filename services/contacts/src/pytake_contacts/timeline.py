"""The contact timeline built from conversations' events (each fact recorded once).

A campaign send opens a conversation per recipient: ``conversation.opened`` (and
``conversation.status_changed``) are :class:`~pytake_common.consumer.SetHandler` s, a
batch's facts of an organization in one ``INSERT`` (:func:`record_facts`), as
``message.appended``'s are (:mod:`pytake_contacts.inbound`): one statement per batch
instead of one per event, the same fact and key either way.
"""

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common import rawpg
from pytake_common.consumer import Handler, SetHandler
from pytake_common.event_types import (
    CONVERSATIONS_CONVERSATION_OPENED_V1,
    CONVERSATIONS_CONVERSATION_STATUS_CHANGED_V1,
    CONVERSATIONS_MESSAGE_APPENDED_V1,
)
from pytake_common.events import CloudEvent, TenantEventData
from pytake_contacts.store import record_interaction
from pytake_contacts.tables import contacts


class Opened(TenantEventData):
    conversation_id: uuid.UUID
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    opened_at: datetime
    previous_conversation_id: uuid.UUID | None = None
    started_by: uuid.UUID | None = None


class StatusChanged(TenantEventData):
    conversation_id: uuid.UUID
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    old_status: str | None = None
    new_status: str
    changed_by: uuid.UUID | None = None
    at: datetime


class Appended(TenantEventData):
    message_id: uuid.UUID
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    direction: str
    type: str
    created_at: datetime


#: A timeline fact: contact, kind, when, its key (a redelivery records nothing), its data.
Fact = tuple[uuid.UUID, str, datetime, str, dict[str, Any]]

#: Timeline facts of one organization, each once.
_FACTS = """
INSERT INTO contact_interactions (id, organization_id, contact_id, kind, occurred_at, fact_key,
                                  data)
SELECT gen_random_uuid(), $1, f.contact_id, f.kind, f.at, f.fact_key, f.data::jsonb
FROM unnest($2::uuid[], $3::text[], $4::timestamptz[], $5::text[], $6::text[])
    AS f(contact_id, kind, at, fact_key, data)
ON CONFLICT DO NOTHING
"""


async def record_facts(conn: Any, org: uuid.UUID, facts: list[Fact]) -> None:
    """Add ``facts`` to their contacts' timelines in one statement (each key once)."""
    await conn.execute(
        _FACTS,
        org,
        [f[0] for f in facts],
        [f[1] for f in facts],
        [f[2] for f in facts],
        [f[3][:200] for f in facts],
        [json.dumps(f[4]) for f in facts],
    )


def opened_fact(d: Opened) -> Fact:
    return (
        d.contact_id,
        "conversation.opened",
        d.opened_at,
        f"opened:{d.conversation_id}:{d.opened_at.isoformat()}",
        {
            "conversation_id": str(d.conversation_id),
            # a new conversation after a closed one links back to it
            "previous_conversation_id": (
                str(d.previous_conversation_id) if d.previous_conversation_id else None
            ),
            # null: the customer's message opened it
            "started_by": str(d.started_by) if d.started_by else None,
        },
    )


def status_fact(d: StatusChanged) -> Fact:
    return (
        d.contact_id,
        "conversation.status_changed",
        d.at,
        f"status:{d.conversation_id}:{d.new_status}:{d.at.isoformat()}",
        {
            "conversation_id": str(d.conversation_id),
            "old_status": d.old_status,
            "new_status": d.new_status,
            "changed_by": str(d.changed_by) if d.changed_by else None,
        },
    )


async def on_opened_many(session: AsyncSession, rows: list[Opened]) -> None:
    conn = await rawpg.driver(session)
    await record_facts(conn, rows[0].organization_id, [opened_fact(d) for d in rows])


async def on_status_changed_many(session: AsyncSession, rows: list[StatusChanged]) -> None:
    conn = await rawpg.driver(session)
    await record_facts(conn, rows[0].organization_id, [status_fact(d) for d in rows])


async def on_appended(session: AsyncSession, event: CloudEvent) -> None:
    d = event.parse_data(Appended)
    kind = "message.inbound" if d.direction == "inbound" else "message.outbound"
    await record_interaction(
        session,
        d.organization_id,
        d.contact_id,
        kind,
        d.created_at,
        f"message:{d.message_id}",
        {
            "conversation_id": str(d.conversation_id),
            "message_id": str(d.message_id),
            "type": d.type,
        },
    )
    # An agent's reply is an interaction too (inbound ones already moved it on receipt).
    await session.execute(
        update(contacts)
        .where(
            contacts.c.id == d.contact_id,
            contacts.c.organization_id == d.organization_id,
            (contacts.c.last_interaction_at.is_(None))
            | (contacts.c.last_interaction_at < d.created_at),
        )
        .values(last_interaction_at=d.created_at, updated_at=func.now())
    )


TIMELINE_HANDLERS: dict[str, Handler] = {
    # after the batch's new contacts exist (inbound messages: order 0)
    CONVERSATIONS_CONVERSATION_OPENED_V1: SetHandler(Opened, on_opened_many, order=1),
    CONVERSATIONS_CONVERSATION_STATUS_CHANGED_V1: SetHandler(
        StatusChanged, on_status_changed_many, order=1
    ),
    CONVERSATIONS_MESSAGE_APPENDED_V1: on_appended,
}
