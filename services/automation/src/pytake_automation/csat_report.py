"""Reading CSAT: the surveys' answers (a keyset page) and a report per agent and department.

The report covers the surveys *sent* in ``[from, to)``: how many were sent and answered,
the average rating, the CSAT score (the share of answers rating 4 or 5) and the
distribution of ratings; for the organization, each agent (the conversation's assignee
when it was resolved) and each department.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation.tables import csat_surveys
from pytake_common.pagination import ROW_ID, TIMESTAMP, keyset

#: answered surveys, newest answer first, by (answered_at, id)
RESPONSES = keyset("csat-responses", TIMESTAMP, ROW_ID)


class Response(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    agent_id: uuid.UUID | None
    department_id: uuid.UUID | None
    channel: str
    rating: int
    comment: str | None
    resolved_at: datetime
    sent_at: datetime
    answered_at: datetime
    commented_at: datetime | None


async def responses_page(
    session: AsyncSession,
    org: uuid.UUID,
    limit: int,
    cursor: str | None,
    *,
    agent_id: uuid.UUID | None = None,
    department_id: uuid.UUID | None = None,
) -> tuple[list[Response], str | None]:
    s = csat_surveys.c
    stmt = select(*(s[name] for name in Response.model_fields)).where(
        s.organization_id == org, s.answered_at.is_not(None)
    )
    if agent_id is not None:
        stmt = stmt.where(s.agent_id == agent_id)
    if department_id is not None:
        stmt = stmt.where(s.department_id == department_id)
    if cursor:
        stmt = stmt.where(tuple_(s.answered_at, s.id) < tuple_(*RESPONSES.decode(cursor)))
    stmt = stmt.order_by(s.answered_at.desc(), s.id.desc()).limit(limit + 1)
    rows = (await session.execute(stmt)).all()
    items = [Response.model_validate(dict(r._mapping)) for r in rows[:limit]]
    more = len(rows) > limit
    return items, RESPONSES.encode((items[-1].answered_at, items[-1].id)) if more else None


class Scores(BaseModel):
    sent: int = 0
    answered: int = 0
    #: answered / sent
    response_rate: float | None = None
    average: float | None = None
    #: the share of answers rating 4 or 5
    csat: float | None = None
    #: answers per rating, "1" to "5"
    distribution: dict[str, int] = {str(n): 0 for n in range(1, 6)}


class AgentScores(Scores):
    agent_id: uuid.UUID | None


class DepartmentScores(Scores):
    department_id: uuid.UUID | None


class Report(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime
    organization: Scores
    agents: list[AgentScores]
    departments: list[DepartmentScores]


REPORT = """
SELECT agent_id, department_id,
  grouping(agent_id) = 1 AS over_agents, grouping(department_id) = 1 AS over_departments,
  count(*) AS sent, count(rating) AS answered, avg(rating) AS average,
  count(*) FILTER (WHERE rating >= 4) AS satisfied,
  count(*) FILTER (WHERE rating = 1) AS r1, count(*) FILTER (WHERE rating = 2) AS r2,
  count(*) FILTER (WHERE rating = 3) AS r3, count(*) FILTER (WHERE rating = 4) AS r4,
  count(*) FILTER (WHERE rating = 5) AS r5
FROM csat_surveys
WHERE organization_id = :org AND sent_at >= :from AND sent_at < :to
GROUP BY GROUPING SETS ((agent_id), (department_id), ())"""


def _scores(row: Any) -> dict[str, Any]:
    sent, answered = int(row.sent), int(row.answered)
    return {
        "sent": sent,
        "answered": answered,
        "response_rate": round(answered / sent, 4) if sent else None,
        "average": round(float(row.average), 3) if row.average is not None else None,
        "csat": round(int(row.satisfied) / answered, 4) if answered else None,
        "distribution": {str(n): int(getattr(row, f"r{n}")) for n in range(1, 6)},
    }


async def report(session: AsyncSession, org: uuid.UUID, start: datetime, end: datetime) -> Report:
    totals = Scores()
    agents: list[AgentScores] = []
    departments: list[DepartmentScores] = []
    params = {"org": org, "from": start, "to": end}
    for row in await session.execute(text(REPORT), params):
        if row.over_agents and row.over_departments:
            totals = Scores(**_scores(row))
        elif row.over_departments:
            agents.append(AgentScores(agent_id=row.agent_id, **_scores(row)))
        else:
            departments.append(DepartmentScores(department_id=row.department_id, **_scores(row)))
    return Report(
        from_=start,
        to=end,
        organization=totals,
        agents=sorted(agents, key=lambda a: str(a.agent_id)),
        departments=sorted(departments, key=lambda d: str(d.department_id)),
    )
