"""Conversation metrics (``GET /v1/conversations/metrics``): first response, response and
resolution times, SLA attainment.

- first response: a conversation opened in the period → its first outbound message of an
  agent or API client (automation's and campaigns' messages are not responses);
  credited to the agent who sent it;
- response: each customer turn (inbound messages with no reply in between) answered in
  the period → the reply; credited to the agent who replied;
- resolution: a conversation resolved in the period → opened to resolved; credited to
  its assignee;
- SLA attainment: conversations whose SLA cycle started in the period, per target
  (first response, resolution): met (the cycle's first agent reply, or the resolution
  or closing, by the due time) or breached (automation reported a breach, or the target
  was met late); targets still running count in neither. Credited to the conversation's
  assignee and department.
"""

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

TOTAL = "grouping(agent) = 1 AS grouping_total"
STATS = """count(*) AS n, avg(s) AS avg_s,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS p50_s,
  percentile_cont(0.9) WITHIN GROUP (ORDER BY s) AS p90_s"""

FIRST_RESPONSE = f"""
WITH firsts AS (
  SELECT DISTINCT ON (m.conversation_id) m.sent_by AS agent,
         extract(epoch FROM m.created_at - c.created_at) AS s
  FROM conversations c JOIN messages m ON m.conversation_id = c.id
  WHERE c.organization_id = :org AND m.organization_id = :org
    AND c.created_at >= :from AND c.created_at < :to AND m.direction = 'outbound'
    AND m.sender_type IN ('user', 'api_client')
  ORDER BY m.conversation_id, m.created_at, m.id)
SELECT agent, {TOTAL}, {STATS}
FROM firsts GROUP BY ROLLUP (agent)"""  # noqa: S608 (constants only)

RESPONSE = f"""
WITH seq AS (
  SELECT m.conversation_id, m.id, m.direction, m.created_at, m.sent_by,
         lag(m.direction) OVER w AS prev
  FROM messages m
  WHERE m.organization_id = :org
    AND (m.direction = 'inbound'
         OR (m.direction = 'outbound' AND m.sender_type IN ('user', 'api_client')))
    AND m.conversation_id IN (
      SELECT id FROM conversations
      WHERE organization_id = :org AND last_message_at >= :from AND created_at < :to)
  WINDOW w AS (PARTITION BY m.conversation_id ORDER BY m.created_at, m.id)
), turns AS (
  SELECT *, max(CASE WHEN direction = 'inbound' AND prev IS DISTINCT FROM 'inbound'
                     THEN created_at END)
            OVER (PARTITION BY conversation_id ORDER BY created_at, id) AS turn_start
  FROM seq
), replies AS (
  SELECT sent_by AS agent, extract(epoch FROM created_at - turn_start) AS s
  FROM turns
  WHERE direction = 'outbound' AND prev = 'inbound'
    AND created_at >= :from AND created_at < :to)
SELECT agent, {TOTAL}, {STATS}
FROM replies GROUP BY ROLLUP (agent)"""  # noqa: S608 (constants only)

RESOLUTION = f"""
WITH resolved AS (
  SELECT assignee_id AS agent, extract(epoch FROM resolved_at - created_at) AS s
  FROM conversations
  WHERE organization_id = :org AND resolved_at >= :from AND resolved_at < :to)
SELECT agent, {TOTAL}, {STATS}
FROM resolved GROUP BY ROLLUP (agent)"""  # noqa: S608 (constants only)


# One pass over the period's SLA cycles (index ix_conversations_sla_started), grouped by
# agent, by department and in total. A target is met by its time (the cycle's first
# agent reply; resolving or closing) at or before the due time; breached when
# automation reported it, or met late (tolerant of a breach event not yet consumed).
SLA_ATTAINMENT = """
WITH cycles AS (
  SELECT assignee_id, department_id,
    CASE WHEN first_response_breached_at IS NOT NULL THEN false
         WHEN sla_responded_at IS NULL THEN NULL
         ELSE sla_responded_at <= first_response_due_at END AS fr,
    CASE WHEN resolution_breached_at IS NOT NULL THEN false
         WHEN status NOT IN ('resolved', 'closed') THEN NULL
         ELSE coalesce(resolved_at, closed_at) <= resolution_due_at END AS res
  FROM conversations
  WHERE organization_id = :org AND sla_started_at >= :from AND sla_started_at < :to)
SELECT assignee_id AS agent, department_id AS department,
  grouping(assignee_id) = 1 AS over_agents, grouping(department_id) = 1 AS over_departments,
  count(*) FILTER (WHERE fr) AS fr_met, count(*) FILTER (WHERE NOT fr) AS fr_breached,
  count(*) FILTER (WHERE res) AS res_met, count(*) FILTER (WHERE NOT res) AS res_breached
FROM cycles GROUP BY GROUPING SETS ((assignee_id), (department_id), ())"""


class Stat(BaseModel):
    count: int = 0
    avg_seconds: float | None = None
    p50_seconds: float | None = None
    p90_seconds: float | None = None


class Attainment(BaseModel):
    met: int = 0
    breached: int = 0
    #: met / (met + breached); null when no target was decided
    rate: float | None = None


class SlaFigures(BaseModel):
    first_response: Attainment = Attainment()
    resolution: Attainment = Attainment()


class Figures(BaseModel):
    first_response: Stat = Stat()
    response: Stat = Stat()
    resolution: Stat = Stat()
    sla: SlaFigures = SlaFigures()


class AgentFigures(Figures):
    #: null: messages sent through the API by integrations, or unassigned conversations
    agent_id: uuid.UUID | None


class DepartmentFigures(BaseModel):
    #: null: conversations of no department
    department_id: uuid.UUID | None
    sla: SlaFigures = SlaFigures()


class Metrics(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime
    organization: Figures
    agents: list[AgentFigures]
    departments: list[DepartmentFigures] = []


def _stat(row: Any) -> Stat:
    def f(value: Any) -> float | None:
        return None if value is None else round(float(value), 3)

    return Stat(
        count=int(row.n),
        avg_seconds=f(row.avg_s),
        p50_seconds=f(row.p50_s),
        p90_seconds=f(row.p90_s),
    )


def _attainment(met: int, breached: int) -> Attainment:
    decided = met + breached
    return Attainment(met=met, breached=breached, rate=round(met / decided, 4) if decided else None)


def _sla(row: Any) -> SlaFigures:
    return SlaFigures(
        first_response=_attainment(int(row.fr_met), int(row.fr_breached)),
        resolution=_attainment(int(row.res_met), int(row.res_breached)),
    )


async def measure(session: AsyncSession, org: uuid.UUID, start: datetime, end: datetime) -> Metrics:
    """The organization's figures over ``[start, end)``, in total, per agent and per
    department."""
    params = {"org": org, "from": start, "to": end}
    totals = Figures()
    agents: dict[uuid.UUID | None, AgentFigures] = {}
    for name, sql in (
        ("first_response", FIRST_RESPONSE),
        ("response", RESPONSE),
        ("resolution", RESOLUTION),
    ):
        for row in await session.execute(text(sql), params):
            # ROLLUP adds the organization's total row (grouping = 1).
            if row.grouping_total:
                setattr(totals, name, _stat(row))
            else:
                figures = agents.setdefault(row.agent, AgentFigures(agent_id=row.agent))
                setattr(figures, name, _stat(row))
    departments: dict[uuid.UUID | None, DepartmentFigures] = {}
    for row in await session.execute(text(SLA_ATTAINMENT), params):
        sla = _sla(row)
        if row.over_agents and row.over_departments:  # the organization's total
            totals.sla = sla
        elif row.over_departments:  # one agent's row
            agents.setdefault(row.agent, AgentFigures(agent_id=row.agent)).sla = sla
        else:
            departments[row.department] = DepartmentFigures(department_id=row.department, sla=sla)
    ordered = sorted(agents.values(), key=lambda a: str(a.agent_id))
    return Metrics(
        from_=start,
        to=end,
        organization=totals,
        agents=ordered,
        departments=sorted(departments.values(), key=lambda d: str(d.department_id)),
    )
