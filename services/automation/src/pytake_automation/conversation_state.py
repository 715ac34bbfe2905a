"""The conversations replica: what rules and timers know of each conversation.

Built from conversations' events (opened, appended, status_changed, assigned), which come
on two topics and so may arrive in either order: each apply creates the row when missing
and moves only the fields its event owns.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation.tables import conversations
from pytake_common import rawpg
from pytake_common.events import TenantEventData

#: the replica's columns, in order
COLUMNS = tuple(conversations.c.keys())

#: senders whose messages count as an agent's reply (automation and campaigns do not)
AGENT_SENDERS = frozenset({"user", "api_client"})


class Reply(BaseModel):
    kind: str
    id: str
    title: str


class Appended(TenantEventData):
    message_id: uuid.UUID
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    direction: str
    type: str
    created_at: datetime
    sender_type: str | None = None
    sender_id: uuid.UUID | None = None
    text: str | None = None
    reply: Reply | None = None


class Opened(TenantEventData):
    conversation_id: uuid.UUID
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    number_id: uuid.UUID
    opened_at: datetime
    started_by: uuid.UUID | None = None


class StatusMoved(TenantEventData):
    conversation_id: uuid.UUID
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    old_status: str
    new_status: str
    changed_by: uuid.UUID | None = None
    at: datetime
    actor_type: str | None = None
    actor_id: uuid.UUID | None = None


class Assigned(TenantEventData):
    conversation_id: uuid.UUID
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    assignee_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    assigned_by: uuid.UUID | None = None
    at: datetime
    actor_type: str | None = None
    actor_id: uuid.UUID | None = None


class PriorityChanged(TenantEventData):
    conversation_id: uuid.UUID
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    new_priority: str
    at: datetime


async def _upsert(
    session: AsyncSession,
    org: uuid.UUID,
    conversation_id: uuid.UUID,
    contact_id: uuid.UUID,
    values: dict[str, Any],
) -> Row[Any]:
    """Create the row if missing, then apply ``values``; the row after.

    The update comes first: the row exists for every event but a conversation's first,
    so that is one statement; only when it found nothing is the row created (``ON
    CONFLICT DO NOTHING``: someone else may just have) and the update made again."""
    move = (
        update(conversations)
        .where(conversations.c.id == conversation_id, conversations.c.organization_id == org)
        .values(**values, updated_at=func.now())
        .returning(*conversations.c)
    )
    row = (await session.execute(move)).one_or_none()
    if row is not None:
        return row
    await session.execute(
        pg_insert(conversations)
        .values(id=conversation_id, organization_id=org, contact_id=contact_id)
        .on_conflict_do_nothing(index_elements=[conversations.c.id])
    )
    return (await session.execute(move)).one()


#: A conversation opened, in one statement (it is usually the conversation's first event:
#: :func:`_upsert` would take three): created as the event says, or, known from an earlier
#: event, moved to it. ``$6``: opened by a business (it never unsets the flag).
_OPENED = """
INSERT INTO conversations AS c
    (id, organization_id, contact_id, number_id, opened_at, status, started_by_business)
VALUES ($1, $2, $3, $4, $5, 'open', $6)
ON CONFLICT (id) DO UPDATE
SET number_id = EXCLUDED.number_id, opened_at = EXCLUDED.opened_at, status = 'open',
    started_by_business = c.started_by_business OR EXCLUDED.started_by_business,
    updated_at = now()
WHERE c.organization_id = EXCLUDED.organization_id
RETURNING c.*
"""


async def on_opened(session: AsyncSession, d: Opened) -> Any:
    """The row after (its columns as attributes)."""
    conn = await rawpg.driver(session)
    record = await conn.fetchrow(
        _OPENED,
        d.conversation_id,
        d.organization_id,
        d.contact_id,
        d.number_id,
        d.opened_at,
        d.started_by is not None,
    )
    if record is None:  # the id is another organization's: nothing to move
        raise LookupError(f"conversation {d.conversation_id} is not this organization's")
    return as_row(record)


def as_row(record: Any) -> SimpleNamespace:
    """A ``conversations`` record of asyncpg as a row (attributes, standard UUIDs)."""
    return SimpleNamespace(**{k: plain(record[k]) for k in COLUMNS})


async def on_appended(session: AsyncSession, d: Appended) -> Any:
    """A customer's message on a conversation not known yet: the row after. On a known one
    it takes the engine's one statement instead
    (:meth:`pytake_automation.engine.Engine.move_and_read`); a business's message takes
    :func:`on_outbound`."""
    c = conversations.c
    values: dict[str, Any] = {
        "last_message_at": func.greatest(c.last_message_at, d.created_at),
        "inbound_count": c.inbound_count + 1,
        "last_inbound_at": func.greatest(c.last_inbound_at, d.created_at),
    }
    return await _upsert(session, d.organization_id, d.conversation_id, d.contact_id, values)


#: A business's message (:func:`on_appended`'s outbound case) in one statement, with the
#: organization's settings (``$4``: an agent's or API client's). The conversation is made
#: when this is its first event: a campaign's message often comes before its conversation's
#: ``opened`` (another topic), and the update, then the insert and the update again of
#: :func:`_upsert` took four statements, three of them built by the ORM.
_OUTBOUND = """
INSERT INTO conversations AS c
    (id, organization_id, contact_id, last_message_at, started_by_business,
     last_agent_reply_at)
VALUES ($2, $1, $5, $3, true, CASE WHEN $4 THEN $3::timestamptz END)
ON CONFLICT (id) DO UPDATE
SET last_message_at = greatest(c.last_message_at, EXCLUDED.last_message_at),
    started_by_business = c.started_by_business OR c.inbound_count = 0,
    last_agent_reply_at = CASE WHEN $4 THEN greatest(c.last_agent_reply_at, $3)
                               ELSE c.last_agent_reply_at END,
    updated_at = now()
WHERE c.organization_id = EXCLUDED.organization_id
RETURNING c.*, (SELECT o.settings FROM organizations o WHERE o.organization_id = $1) AS org
"""


async def on_outbound(session: AsyncSession, d: Appended) -> tuple[Any, Mapping[str, Any]]:
    """:func:`on_appended` for a business's message (the conversation made if this is its
    first event), and the organization's settings document."""
    conn = await rawpg.driver(session)
    record = await conn.fetchrow(
        _OUTBOUND,
        d.organization_id,
        d.conversation_id,
        d.created_at,
        d.sender_type in AGENT_SENDERS,
        d.contact_id,
    )
    if record is None:  # the id is another organization's: nothing to move
        raise LookupError(f"conversation {d.conversation_id} is not this organization's")
    return as_row(record), record["org"] or {}


async def on_status(session: AsyncSession, d: StatusMoved) -> Row[Any]:
    return await _upsert(
        session, d.organization_id, d.conversation_id, d.contact_id, {"status": d.new_status}
    )


async def on_assigned(session: AsyncSession, d: Assigned) -> Row[Any]:
    values = {"assignee_id": d.assignee_id, "department_id": d.department_id}
    return await _upsert(session, d.organization_id, d.conversation_id, d.contact_id, values)


async def on_priority(session: AsyncSession, d: PriorityChanged) -> Row[Any]:
    return await _upsert(
        session, d.organization_id, d.conversation_id, d.contact_id, {"priority": d.new_priority}
    )


async def load(
    session: AsyncSession, org: uuid.UUID, conversation_id: uuid.UUID
) -> Row[Any] | None:
    result = await session.execute(
        select(conversations).where(
            conversations.c.id == conversation_id, conversations.c.organization_id == org
        )
    )
    return result.one_or_none()


def plain(value: Any) -> Any:
    """asyncpg's UUIDs as the standard library's (what SQLAlchemy rows carry)."""
    return uuid.UUID(bytes=value.bytes) if isinstance(value, uuid.UUID) else value
