"""SLA cycles: due times on opening, met by the first agent reply and the resolution,
breached by a timer — each told to conversations (``sla.applied`` / ``sla.breached``).

A *cycle* starts when a conversation opens or reopens (``conversation.opened``): the
policy (:mod:`pytake_automation.sla_policies`) and the conversation's priority give the
first-response and resolution due times, counted from the opening in calendar or business
minutes. A priority change re-applies the same cycle with the new priority's targets
(breaches already reported stay). The first reply of an agent or API client
(``sender_type`` user / api_client; automation and campaigns do not count) meets the
first-response target; resolving or closing meets both (a conversation closed without a
reply has nothing left to answer). A target still unmet at its due time is breached once:
its timer (the shared ``timers`` table, kinds ``sla_first_response`` / ``sla_resolution``)
fires, and the conditional update of the cycle's state emits ``sla.breached`` at most once.

Every step runs inside the consumer's (or timer's) transaction, keyed on facts: the same
event twice, or a timer firing twice, changes nothing the second time.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation import sla_policies
from pytake_automation.business_hours import (
    NeverOpen,
    Schedule,
    add_business_minutes,
    schedule_of,
)
from pytake_automation.conversation_state import plain
from pytake_automation.events import SlaApplied, SlaBreached
from pytake_automation.tables import conversations, organizations, sla_states, timers
from pytake_common import rawpg
from pytake_common.outbox import emit

FIRST_RESPONSE, RESOLUTION = "first_response", "resolution"
KINDS = (FIRST_RESPONSE, RESOLUTION)
#: the timers' kinds, one per target
TIMER_KINDS = {f"sla_{kind}": kind for kind in KINDS}
SOURCE_KEY = "sla"


def _cycle_key(started_at: datetime) -> str:
    return started_at.astimezone(UTC).isoformat()


async def _schedule(session: AsyncSession, org: uuid.UUID) -> Schedule:
    """The organization's opening hours from its settings replica (none: always open)."""
    settings = await session.scalar(
        select(organizations.c.settings).where(organizations.c.organization_id == org)
    )
    return schedule_of(settings or {})


async def due_times(
    session: AsyncSession,
    org: uuid.UUID,
    policy: sla_policies.Policy | None,
    priority: str,
    started_at: datetime,
) -> tuple[datetime | None, datetime | None]:
    if policy is None:
        return None, None
    minutes = sla_policies.target_minutes(policy, priority)
    schedule = await _schedule(session, org) if policy.business_hours else None
    dues: list[datetime | None] = []
    for target in minutes:
        if target is None:
            dues.append(None)
        elif schedule is None:
            dues.append(started_at + timedelta(minutes=target))
        else:
            try:
                dues.append(add_business_minutes(schedule, started_at, target))
            except NeverOpen:
                dues.append(None)
    return dues[0], dues[1]


#: The conversation's SLA state, locked for the decision (raw: it runs for every opened
#: conversation, and a statement built and compiled per call cost more than its round trip).
_LOCK_STATE = (
    "SELECT * FROM sla_states WHERE conversation_id = $2 AND organization_id = $1 FOR UPDATE"
)


async def _lock_state(session: AsyncSession, org: uuid.UUID, conversation_id: uuid.UUID) -> Any:
    """The state row (its columns as attributes), None when the conversation has none."""
    conn = await rawpg.driver(session)
    record = await conn.fetchrow(_LOCK_STATE, org, conversation_id)
    if record is None:
        return None
    return SimpleNamespace(**{k: plain(v) for k, v in record.items()})


async def apply(
    session: AsyncSession, conv: Any, started_at: datetime | None = None, no_policy: bool = False
) -> SlaApplied | None:
    """Decide the SLA of ``conv`` (a conversations replica row): a new cycle from
    ``started_at``, or (None) the current cycle again with the conversation's priority now.
    Emits ``sla.applied`` when the decision changed; arms and disarms the timers."""
    org, conv_id = conv.organization_id, conv.id
    state = await _lock_state(session, org, conv_id)
    new_cycle = started_at is not None and (state is None or state.started_at != started_at)
    if not new_cycle and state is None:
        return None  # a priority change of a conversation without a cycle
    start = started_at if new_cycle else state.started_at
    assert start is not None
    policy = (
        None
        if no_policy
        else await sla_policies.choose(session, org, conv.department_id, conv.number_id)
    )
    first_due, resolution_due = await due_times(session, org, policy, conv.priority, start)
    policy_id = policy.id if policy else None
    decided = (policy_id, first_due, resolution_due, conv.priority)
    if state is None and policy_id is None:
        return None  # nothing applies and nothing to clear
    if not new_cycle and decided == (
        state.policy_id,
        state.first_response_due_at,
        state.resolution_due_at,
        state.priority,
    ):
        return None  # the same decision (a redelivered event, an unchanged priority)
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "policy_id": policy_id,
        "priority": conv.priority,
        "first_response_due_at": first_due,
        "resolution_due_at": resolution_due,
        "applied_at": now,
    }
    if new_cycle:
        replied = conv.last_agent_reply_at
        values.update(
            started_at=start,
            first_responded_at=replied if replied is not None and replied >= start else None,
            resolved_at=None,
            first_response_breached_at=None,
            resolution_breached_at=None,
        )
    stmt = pg_insert(sla_states).values(
        conversation_id=conv_id, organization_id=org, **{"started_at": start, **values}
    )
    row = (
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[sla_states.c.conversation_id], set_=values
            ).returning(*sla_states.c)
        )
    ).one()
    await _arm(session, row)
    applied = SlaApplied(
        organization_id=org,
        conversation_id=conv_id,
        policy_id=policy_id,
        first_response_due_at=first_due,
        resolution_due_at=resolution_due,
        priority=conv.priority,
        business_hours=bool(policy and policy.business_hours),
        started_at=start,
        applied_at=now,
    )
    await emit(session, applied, conv_id)
    return applied


async def _arm(session: AsyncSession, state: Any) -> None:
    """One timer per target still running; none for a target met, breached or without due."""
    for kind in KINDS:
        timer_kind = f"sla_{kind}"
        due = getattr(state, f"{kind}_due_at")
        met = state.first_responded_at if kind == FIRST_RESPONSE else None
        running = (
            due is not None
            and met is None
            and state.resolved_at is None
            and getattr(state, f"{kind}_breached_at") is None
        )
        if not running:
            await _disarm(session, state.conversation_id, timer_kind)
            continue
        values = {"due_at": due, "armed_by": _cycle_key(state.started_at)}
        stmt = pg_insert(timers).values(
            organization_id=state.organization_id,
            conversation_id=state.conversation_id,
            kind=timer_kind,
            source_key=SOURCE_KEY,
            **values,
        )
        await session.execute(stmt.on_conflict_do_update(constraint="uq_timers_slot", set_=values))


async def _disarm(session: AsyncSession, conversation_id: uuid.UUID, *kinds: str) -> None:
    await session.execute(
        delete(timers).where(
            timers.c.conversation_id == conversation_id,
            timers.c.kind.in_(kinds),
            timers.c.source_key == SOURCE_KEY,
        )
    )


async def on_opened(
    session: AsyncSession,
    org: uuid.UUID,
    conv_id: uuid.UUID,
    at: datetime,
    business: bool,
    conv: Any = None,
) -> None:
    """A cycle starts (``business``: the business started the conversation: no SLA).
    ``conv``: the conversation's replica row when the caller has it (else it is read)."""
    if conv is None:
        conv = await _conversation(session, org, conv_id)
    if conv is not None:
        await apply(session, conv, started_at=at, no_policy=business)


async def on_priority(
    session: AsyncSession, org: uuid.UUID, conv_id: uuid.UUID, priority: str
) -> None:
    await session.execute(
        update(conversations)
        .where(conversations.c.id == conv_id, conversations.c.organization_id == org)
        .values(priority=priority)
    )
    conv = await _conversation(session, org, conv_id)
    if conv is not None:
        await apply(session, conv)


async def _meet(
    session: AsyncSession, org: uuid.UUID, conv_id: uuid.UUID, column: str, at: datetime
) -> bool:
    """Stamp the cycle's ``column`` (first_responded_at / resolved_at) with ``at`` unless it
    is set or ``at`` is before the cycle; whether it was stamped now."""
    met = sla_states.c[column]
    result = await session.execute(
        update(sla_states)
        .where(
            sla_states.c.conversation_id == conv_id,
            sla_states.c.organization_id == org,
            met.is_(None),
            sla_states.c.started_at <= at,
        )
        .values({column: at})
        .returning(sla_states.c.conversation_id)
    )
    return result.first() is not None


async def on_agent_reply(
    session: AsyncSession, org: uuid.UUID, conv_id: uuid.UUID, at: datetime
) -> None:
    """The first agent reply of the cycle meets its first-response target."""
    if await _meet(session, org, conv_id, "first_responded_at", at):
        await _disarm(session, conv_id, "sla_first_response")


async def on_finished(
    session: AsyncSession, org: uuid.UUID, conv_id: uuid.UUID, at: datetime
) -> None:
    """Resolved or closed: the cycle's targets are met (nothing runs any more)."""
    if await _meet(session, org, conv_id, "resolved_at", at):
        await _disarm(session, conv_id, *TIMER_KINDS)


async def fire(session: AsyncSession, timer: Any, now: datetime) -> SlaBreached | None:
    """A due SLA timer, claimed by the timer worker (``triggers.on_timer``), which deletes
    it after: breach its target once, if still unmet."""
    kind = TIMER_KINDS.get(timer.kind)
    if kind is None:
        return None
    state = await _lock_state(session, timer.organization_id, timer.conversation_id)
    if state is None or _cycle_key(state.started_at) != timer.armed_by:
        return None  # a timer of an earlier cycle
    due = getattr(state, f"{kind}_due_at")
    met = state.resolved_at or (state.first_responded_at if kind == FIRST_RESPONSE else None)
    if due is None or met is not None or getattr(state, f"{kind}_breached_at") is not None:
        return None
    if due > now:  # not yet by this clock: a new timer row (the claimed one is deleted)
        await _disarm(session, state.conversation_id, timer.kind)
        await _arm(session, state)
        return None
    await session.execute(
        update(sla_states)
        .where(sla_states.c.conversation_id == state.conversation_id)
        .values({f"{kind}_breached_at": now})
    )
    breached = SlaBreached(
        organization_id=state.organization_id,
        conversation_id=state.conversation_id,
        policy_id=state.policy_id,
        kind=kind,
        due_at=due,
        breached_at=now,
        started_at=state.started_at,
    )
    await emit(session, breached, state.conversation_id)
    return breached


async def _conversation(session: AsyncSession, org: uuid.UUID, conv_id: uuid.UUID) -> Any:
    return (
        await session.execute(
            select(conversations).where(
                conversations.c.id == conv_id, conversations.c.organization_id == org
            )
        )
    ).one_or_none()
