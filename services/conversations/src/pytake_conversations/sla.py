"""SLA state on the conversation, kept from automation's ``sla`` events.

Automation owns SLA policies and their timers; it tells conversations what it decided:

- ``sla.applied``: the policy and due times of the conversation's current SLA *cycle*
  (a cycle starts when the conversation opens or reopens; a priority change re-applies
  the same cycle with new due times);
- ``sla.breached``: a target of the cycle came due unmet (once per target and cycle).

Conversations keeps the first agent reply of the cycle itself (``sla_responded_at``,
set by the send path and recomputed here when a new cycle starts), so whether a target
is *met* needs no further event: first response by that reply, resolution by the
conversation being resolved or closed. The inbox filter ``sla=at_risk|breached`` and
the metrics' attainment read these columns.

Readers are tolerant: unknown fields are ignored, an ``applied`` older than the one
stored changes nothing, a ``breached`` of another cycle than the stored one is stale.
"""

import logging
import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common import event_types
from pytake_common.consumer import Handler
from pytake_common.events import CloudEvent, TenantEventData
from pytake_conversations.domain import OUTBOUND
from pytake_conversations.inbox import push_conversation, update_conversation
from pytake_conversations.tables import conversations, messages

log = logging.getLogger(__name__)

SLA_APPLIED = event_types.AUTOMATION_SLA_APPLIED_V1
SLA_BREACHED = event_types.AUTOMATION_SLA_BREACHED_V1

#: who answers the customer for SLA purposes (not bots, campaigns or notes)
AGENT_SENDERS = ("user", "api_client")
FIRST_RESPONSE, RESOLUTION = "first_response", "resolution"
#: the ``sla`` filter of the inbox
SlaFilter = Literal["at_risk", "breached"]


class SlaApplied(TenantEventData):
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    policy_id: uuid.UUID | None = None
    first_response_due_at: datetime | None = None
    resolution_due_at: datetime | None = None
    #: when the cycle started (opened or reopened); absent: the event's time
    started_at: datetime | None = None
    #: when automation decided (orders two ``applied`` of one conversation)
    applied_at: datetime | None = None


class SlaBreached(TenantEventData):
    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    kind: str
    due_at: datetime
    breached_at: datetime
    started_at: datetime | None = None


async def _lock(session: AsyncSession, org: uuid.UUID, conversation_id: uuid.UUID) -> Any:
    return (
        (
            await session.execute(
                select(conversations)
                .where(
                    conversations.c.id == conversation_id, conversations.c.organization_id == org
                )
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )


def first_agent_reply_since(org: uuid.UUID, conversation_id: uuid.UUID, since: datetime) -> Any:
    """SQL: the time of the first agent (or API) reply in the conversation since ``since``."""
    return (
        select(func.min(messages.c.created_at))
        .where(
            messages.c.organization_id == org,
            messages.c.conversation_id == conversation_id,
            messages.c.direction == OUTBOUND,
            messages.c.sender_type.in_(AGENT_SENDERS),
            messages.c.created_at >= since,
        )
        .scalar_subquery()
    )


async def on_sla_applied(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(SlaApplied)
    org = data.organization_id
    conv = await _lock(session, org, data.conversation_id)
    if conv is None:
        log.info(
            "sla for an unknown conversation", extra={"conversation": str(data.conversation_id)}
        )
        return
    applied_at = data.applied_at or event.time
    if conv["sla_applied_at"] is not None and applied_at < conv["sla_applied_at"]:
        return  # an older decision arriving late
    started_at = data.started_at or event.time
    values: dict[str, Any] = {
        "sla_policy_id": data.policy_id,
        "first_response_due_at": data.first_response_due_at,
        "resolution_due_at": data.resolution_due_at,
        "sla_applied_at": applied_at,
    }
    if conv["sla_started_at"] != started_at:
        # A new cycle: its breaches and first reply are its own.
        values.update(
            sla_started_at=started_at,
            first_response_breached_at=None,
            resolution_breached_at=None,
            sla_responded_at=first_agent_reply_since(org, data.conversation_id, started_at),
        )
    row = await update_conversation(session, org, data.conversation_id, **values)
    await push_conversation(session, org, row, "conversation.updated")


async def on_sla_breached(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(SlaBreached)
    org = data.organization_id
    if data.kind not in (FIRST_RESPONSE, RESOLUTION):
        log.info("unknown sla kind", extra={"kind": data.kind})
        return
    conv = await _lock(session, org, data.conversation_id)
    if conv is None:
        return
    stale = (
        data.started_at is not None
        and conv["sla_started_at"] is not None
        and data.started_at != conv["sla_started_at"]
    )
    column = f"{data.kind}_breached_at"
    if stale or conv[column] is not None:
        return
    row = await update_conversation(
        session, org, data.conversation_id, **{column: data.breached_at}
    )
    await push_conversation(session, org, row, "conversation.updated")


SLA_HANDLERS: dict[str, Handler] = {SLA_APPLIED: on_sla_applied, SLA_BREACHED: on_sla_breached}


def at_risk_sql(deadline: str) -> str:
    """The inbox condition of ``sla=at_risk``: an active conversation with a target not met
    nor breached that comes due by ``deadline`` (a ``$n`` parameter: now + the window).
    Overdue targets whose breach automation has not reported yet stay at risk. Each arm
    repeats the predicate of its partial index (migration 0010_slacsat)."""
    return (
        "status IN ('open', 'pending') AND ("
        "(sla_responded_at IS NULL AND first_response_breached_at IS NULL"
        f" AND first_response_due_at <= {deadline})"
        f" OR (resolution_breached_at IS NULL AND resolution_due_at <= {deadline}))"
    )


#: The inbox condition of ``sla=breached`` (served by the partial index of migration 0009).
BREACHED_SQL = "(first_response_breached_at IS NOT NULL OR resolution_breached_at IS NOT NULL)"
