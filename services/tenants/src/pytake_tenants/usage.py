"""Usage counters built from other services' events, idempotent per fact.

A fact (a contact, a number, a sent message) is a row of ``usage_facts`` keyed by
(organization, kind, subject): inserting it bumps its counter only when the row is
new, removing it tombstones the row and lowers the counter only once. So the same
fact delivered again under another event id (a replay, a republish) counts once,
and a late replay of a creation after the removal counts nothing.
Agents are counted from the users replica (active and not deleted).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import String, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_tenants import plans
from pytake_tenants.tables import departments, usage_counters, usage_facts, users

#: fact kind -> the metric it counts
CONTACT, NUMBER, BUSINESS_MESSAGE = "contact", "number", "business_message"
METRIC_OF = {
    CONTACT: plans.CONTACTS,
    NUMBER: plans.NUMBERS,
    BUSINESS_MESSAGE: plans.MONTHLY_BUSINESS_MESSAGES,
}


def month_of(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m")


async def _bump(
    session: AsyncSession, org: uuid.UUID, metric: str, period: str, delta: int
) -> None:
    stmt = pg_insert(usage_counters).values(
        organization_id=org, metric=metric, period=period, value=max(delta, 0)
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["organization_id", "metric", "period"],
            set_={
                "value": func.greatest(usage_counters.c.value + delta, 0),
                "updated_at": func.now(),
            },
        )
    )


#: Facts of one kind recorded once each, and the new ones added to their periods'
#: counters: one statement whatever the number of facts (a batch of a consumer's
#: records of one organization, or one), and one statement text for the driver's cache.
_COUNT_FACTS = text(
    "WITH new_facts AS ("
    " INSERT INTO usage_facts (organization_id, kind, subject_id, period)"
    " SELECT :org, :kind, f.subject_id, f.period"
    " FROM unnest(:subjects, :periods) AS f(subject_id, period)"
    " ON CONFLICT DO NOTHING RETURNING period)"
    " INSERT INTO usage_counters AS c (organization_id, metric, period, value)"
    " SELECT :org, :metric, period, count(*) FROM new_facts GROUP BY period"
    " ON CONFLICT (organization_id, metric, period)"
    " DO UPDATE SET value = greatest(c.value + excluded.value, 0), updated_at = now()"
).bindparams(
    bindparam("org", type_=UUID(as_uuid=True)),
    bindparam("subjects", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("periods", type_=ARRAY(String())),
)


async def count_facts(
    session: AsyncSession, org: uuid.UUID, kind: str, facts: Sequence[tuple[uuid.UUID, str]]
) -> None:
    """Record facts ``(subject, period)`` of ``kind``; each new one counts once."""
    if not facts:
        return
    await session.execute(
        _COUNT_FACTS,
        {
            "org": org,
            "kind": kind,
            "metric": METRIC_OF[kind],
            "subjects": [subject for subject, _ in facts],
            "periods": [period for _, period in facts],
        },
    )


async def remove_fact(
    session: AsyncSession, org: uuid.UUID, kind: str, subject_id: uuid.UUID
) -> bool:
    """Tombstone a fact; True when it was counted until now."""
    removed = (
        await session.execute(
            update(usage_facts)
            .where(
                usage_facts.c.organization_id == org,
                usage_facts.c.kind == kind,
                usage_facts.c.subject_id == subject_id,
                usage_facts.c.removed_at.is_(None),
            )
            .values(removed_at=func.now())
            .returning(usage_facts.c.period)
        )
    ).first()
    if removed is None:
        # Removed before its creation reached us (or removed again): leave a tombstone.
        await session.execute(
            pg_insert(usage_facts)
            .values(organization_id=org, kind=kind, subject_id=subject_id, removed_at=func.now())
            .on_conflict_do_nothing()
        )
        return False
    await _bump(session, org, METRIC_OF[kind], removed.period, -1)
    return True


async def active_agents(session: AsyncSession, org: uuid.UUID) -> int:
    stmt = select(func.count()).where(
        users.c.organization_id == org, users.c.is_active.is_(True), users.c.deleted_at.is_(None)
    )
    return int(await session.scalar(stmt) or 0)


async def department_count(session: AsyncSession, org: uuid.UUID) -> int:
    stmt = select(func.count()).select_from(departments).where(departments.c.organization_id == org)
    return int(await session.scalar(stmt) or 0)


async def current_usage(
    session: AsyncSession, org: uuid.UUID, now: datetime | None = None
) -> dict[str, int | None]:
    """What each limit is measured against now (None: not measured by tenants)."""
    month = month_of(now or datetime.now(UTC))
    rows = await session.execute(
        select(usage_counters.c.metric, usage_counters.c.period, usage_counters.c.value).where(
            usage_counters.c.organization_id == org
        )
    )
    totals: dict[str, int] = {}
    for metric, period, value in rows:
        if (metric in plans.MONTHLY_LIMITS and period == month) or (
            metric not in plans.MONTHLY_LIMITS and period == ""
        ):
            totals[metric] = int(value)
    return {
        plans.AGENTS: await active_agents(session, org),
        plans.NUMBERS: totals.get(plans.NUMBERS, 0),
        plans.CONTACTS: totals.get(plans.CONTACTS, 0),
        plans.DEPARTMENTS: await department_count(session, org),
        plans.MONTHLY_BUSINESS_MESSAGES: totals.get(plans.MONTHLY_BUSINESS_MESSAGES, 0),
        plans.API_REQUESTS_PER_MINUTE: None,
        plans.WEBHOOK_ENDPOINTS: None,  # counted and enforced by integrations
        plans.CAMPAIGNS: None,  # counted and enforced by campaigns
        plans.MONTHLY_CAMPAIGN_RECIPIENTS: None,  # counted and enforced by campaigns
    }


class UsageItem(BaseModel):
    limit: int | None
    used: int | None
    remaining: int | None
    period: str | None


class UsageReport(BaseModel):
    organization_id: uuid.UUID
    plan: str
    month: str
    usage: dict[str, UsageItem]


async def usage_report(session: AsyncSession, org: uuid.UUID, plan: str) -> UsageReport:
    now = datetime.now(UTC)
    used = await current_usage(session, org, now)
    limits = plans.limits_of(plan)
    items: dict[str, Any] = {}
    for name in plans.LIMIT_NAMES:
        limit, amount = limits.get(name), used.get(name)
        remaining = max(limit - amount, 0) if limit is not None and amount is not None else None
        period = month_of(now) if name in plans.MONTHLY_LIMITS else None
        items[name] = UsageItem(limit=limit, used=amount, remaining=remaining, period=period)
    return UsageReport(organization_id=org, plan=plan, month=month_of(now), usage=items)
