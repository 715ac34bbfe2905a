"""Daily activity of an organization, built from conversations' events.

Days are UTC calendar days. Each conversation opening and each message is a fact
of ``usage_facts`` first, so a fact replayed under another event id counts once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from pydantic import BaseModel, Field
from sqlalchemy import Date, Integer, exists, literal, select
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_tenants import plans
from pytake_tenants.tables import daily_stats, usage_facts
from pytake_tenants.usage import current_usage

CONVERSATION_OPENED, MESSAGE_APPENDED = "conversation_opened", "message_appended"
#: A reopened conversation is a new opening: the fact is (conversation, opened_at).
OPENING_NAMESPACE = uuid.UUID("0b6c2d3e-6f0e-4a9e-93a4-4f0f4b1e7c21")


def opening_id(conversation_id: uuid.UUID, opened_at: datetime) -> uuid.UUID:
    return uuid.uuid5(
        OPENING_NAMESPACE, f"{conversation_id}:{opened_at.astimezone(UTC).isoformat()}"
    )


async def _count_once(
    session: AsyncSession, org: uuid.UUID, kind: str, fact: uuid.UUID, day: date, column: str
) -> None:
    """Record the fact and, only if it is new, add one to ``column`` of ``day``.

    One statement (one round trip per event): the fact's insert is a data-modifying
    CTE whose RETURNING row exists only when the fact was new.
    """
    new_fact = (
        pg_insert(usage_facts)
        .values(organization_id=org, kind=kind, subject_id=fact, period="")
        .on_conflict_do_nothing()
        .returning(usage_facts.c.subject_id)
        .cte("new_fact")
    )
    col = daily_stats.c[column]
    await session.execute(
        pg_insert(daily_stats)
        .from_select(
            ["organization_id", "day", column],
            select(
                literal(org, UUID(as_uuid=True)), literal(day, Date()), literal(1, Integer())
            ).where(exists(select(new_fact.c.subject_id))),
        )
        .on_conflict_do_update(index_elements=["organization_id", "day"], set_={column: col + 1})
        .add_cte(new_fact)
    )


async def conversation_opened(
    session: AsyncSession, org: uuid.UUID, conversation_id: uuid.UUID, opened_at: datetime
) -> None:
    fact = opening_id(conversation_id, opened_at)
    day = opened_at.astimezone(UTC).date()
    await _count_once(session, org, CONVERSATION_OPENED, fact, day, "conversations_opened")


async def message_appended(
    session: AsyncSession, org: uuid.UUID, message_id: uuid.UUID, direction: str, at: datetime
) -> None:
    column = "messages_inbound" if direction == "inbound" else "messages_outbound"
    day = at.astimezone(UTC).date()
    await _count_once(session, org, MESSAGE_APPENDED, message_id, day, column)


class Day(BaseModel):
    day: date
    conversations_opened: int
    messages_inbound: int
    messages_outbound: int


class Stats(BaseModel):
    organization_id: uuid.UUID
    from_: date = Field(serialization_alias="from")
    to: date
    active_agents: int
    numbers: int
    contacts: int
    conversations_opened: int
    messages_inbound: int
    messages_outbound: int
    messages: int
    days: list[Day]


async def stats(session: AsyncSession, org: uuid.UUID, start: date, end: date) -> Stats:
    rows = (
        (
            await session.execute(
                select(
                    daily_stats.c.day,
                    daily_stats.c.conversations_opened,
                    daily_stats.c.messages_inbound,
                    daily_stats.c.messages_outbound,
                )
                .where(
                    daily_stats.c.organization_id == org,
                    daily_stats.c.day >= start,
                    daily_stats.c.day <= end,
                )
                .order_by(daily_stats.c.day)
            )
        )
        .mappings()
        .all()
    )
    days = [Day.model_validate(dict(r)) for r in rows]
    used = await current_usage(session, org)
    inbound = sum(d.messages_inbound for d in days)
    outbound = sum(d.messages_outbound for d in days)
    return Stats(
        organization_id=org,
        from_=start,
        to=end,
        active_agents=used[plans.AGENTS] or 0,
        numbers=used[plans.NUMBERS] or 0,
        contacts=used[plans.CONTACTS] or 0,
        conversations_opened=sum(d.conversations_opened for d in days),
        messages_inbound=inbound,
        messages_outbound=outbound,
        messages=inbound + outbound,
        days=days,
    )
