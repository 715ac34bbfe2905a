"""Daily activity of an organization, built from conversations' events.

Days are UTC calendar days. Each conversation opening and each message is a fact
of ``usage_facts`` first, so a fact replayed under another event id counts once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime

from pydantic import BaseModel, Field
from sqlalchemy import Date, Integer, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_tenants import plans
from pytake_tenants.tables import daily_stats
from pytake_tenants.usage import current_usage

CONVERSATION_OPENED, MESSAGE_APPENDED = "conversation_opened", "message_appended"
#: A reopened conversation is a new opening: the fact is (conversation, opened_at).
OPENING_NAMESPACE = uuid.UUID("0b6c2d3e-6f0e-4a9e-93a4-4f0f4b1e7c21")


def opening_id(conversation_id: uuid.UUID, opened_at: datetime) -> uuid.UUID:
    return uuid.uuid5(
        OPENING_NAMESPACE, f"{conversation_id}:{opened_at.astimezone(UTC).isoformat()}"
    )


#: One day's counts a fact adds (``conversations_opened``, ``messages_inbound``,
#: ``messages_outbound``).
Counts = tuple[int, int, int]
OPENED: Counts = (1, 0, 0)
INBOUND: Counts = (0, 1, 0)
OUTBOUND: Counts = (0, 0, 1)

#: Facts of one kind recorded once each, and the new ones added to their days' counts:
#: one statement whatever the number of facts, and one statement text.
_COUNT_DAILY = text(
    "WITH facts AS (SELECT * FROM unnest(:facts, :days, :opened, :inbound, :outbound)"
    " AS f(fact, day, opened, inbound, outbound)),"
    " new_facts AS ("
    " INSERT INTO usage_facts (organization_id, kind, subject_id, period)"
    " SELECT :org, :kind, fact, '' FROM facts"
    " ON CONFLICT DO NOTHING RETURNING subject_id)"
    " INSERT INTO daily_stats AS d"
    " (organization_id, day, conversations_opened, messages_inbound, messages_outbound)"
    " SELECT :org, f.day, sum(f.opened), sum(f.inbound), sum(f.outbound)"
    " FROM facts f JOIN new_facts n ON n.subject_id = f.fact GROUP BY f.day"
    " ON CONFLICT (organization_id, day) DO UPDATE SET"
    " conversations_opened = d.conversations_opened + excluded.conversations_opened,"
    " messages_inbound = d.messages_inbound + excluded.messages_inbound,"
    " messages_outbound = d.messages_outbound + excluded.messages_outbound"
).bindparams(
    bindparam("org", type_=UUID(as_uuid=True)),
    bindparam("facts", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("days", type_=ARRAY(Date())),
    *(bindparam(name, type_=ARRAY(Integer())) for name in ("opened", "inbound", "outbound")),
)


async def count_daily(
    session: AsyncSession,
    org: uuid.UUID,
    kind: str,
    facts: Sequence[tuple[uuid.UUID, date, Counts]],
) -> None:
    """Record facts ``(id, day, counts)`` of ``kind``; each new one adds its counts once."""
    unique = {fact: (day, counts) for fact, day, counts in reversed(facts)}  # first one wins
    if not unique:
        return
    days = [day for day, _ in unique.values()]
    opened, inbound, outbound = ([counts[i] for _, counts in unique.values()] for i in range(3))
    await session.execute(
        _COUNT_DAILY,
        {
            "org": org,
            "kind": kind,
            "facts": list(unique),
            "days": days,
            "opened": opened,
            "inbound": inbound,
            "outbound": outbound,
        },
    )


def opened_fact(conversation_id: uuid.UUID, opened_at: datetime) -> tuple[uuid.UUID, date, Counts]:
    return opening_id(conversation_id, opened_at), opened_at.astimezone(UTC).date(), OPENED


def appended_fact(
    message_id: uuid.UUID, direction: str, at: datetime
) -> tuple[uuid.UUID, date, Counts]:
    return message_id, at.astimezone(UTC).date(), INBOUND if direction == "inbound" else OUTBOUND


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
