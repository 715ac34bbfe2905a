"""Running flows on conversations: start, feed replies, time out, stop.

Everything happens in the caller's transaction (the consumer's inbox transaction, a
rule's run, the timer worker's claim): the session row, its timer and the
``actions_requested`` event commit together, so a redelivered event or a fired timer
that is replayed finds the session already moved and requests nothing twice. A
conversation has at most one active session (a partial unique index); a session runs
the version it started on.

HTTP nodes are called inline, bounded by the node's timeout (at most
:data:`MAX_CALLS_PER_EVENT` per event): a transaction that fails after a call will make
the call again when the event is redelivered, so flows should call idempotent endpoints.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation.actions import Target, request_actions
from pytake_automation.conversation_state import plain
from pytake_automation.flows import catalog
from pytake_automation.flows.definition import FlowDefinition
from pytake_automation.flows.facts import facts_of
from pytake_automation.flows.http import FlowHttpClient
from pytake_automation.flows.interpreter import new_session, step
from pytake_automation.flows.session import Event, Facts, SessionState, Start, Stop, Timeout
from pytake_automation.flows.tables import flow_sessions
from pytake_automation.tables import timers
from pytake_common import rawpg
from pytake_common.errors import UnprocessableState
from pytake_common.retention import Retention

log = logging.getLogger(__name__)

#: the kind of the flows' rows in the service's timer table
TIMER_KIND = "flow_wait"
MAX_CALLS_PER_EVENT = 5
#: customer message ids a session remembers (duplicates arrive close together)
SEEN_MESSAGES = 20
#: namespace of session ids derived from (organization, conversation, flow, trigger)
SESSION_IDS = uuid.UUID("5f0c3d7e-2a9b-5c41-8e6d-1b7a4c9e0f21")

_http: FlowHttpClient | None = None


def configure_http(client: FlowHttpClient) -> None:
    """The app's client (its loopback setting); closed by the app on shutdown."""
    global _http
    _http = client


def http_client() -> FlowHttpClient:
    global _http
    if _http is None:
        _http = FlowHttpClient()
    return _http


class FlowNotPublished(UnprocessableState):
    code, title = "flow_not_published", "The flow has no published version"


def retention(max_age_s: float) -> Retention:
    """Ended sessions go ``max_age_s`` after their end (active ones have no ``ended_at``)."""
    return Retention(flow_sessions, flow_sessions.c.ended_at, max_age_s)


def source_key(session_id: uuid.UUID) -> str:
    return f"flow:{session_id}"


async def start(
    session: AsyncSession,
    target: Target,
    flow_id: uuid.UUID,
    trigger_key: str,
    facts: Facts,
) -> uuid.UUID | None:
    """Start the newest published version of ``flow_id`` on the target's conversation.

    None when nothing started: the same trigger already started it, or another session is
    active on the conversation (it is not interrupted)."""
    org = target.organization_id
    found = await catalog.published(session, org, flow_id)
    if found is None:
        raise FlowNotPublished(f"flow {flow_id} has no published version")
    version, definition = found
    session_id = uuid.uuid5(SESSION_IDS, f"{org}:{target.conversation_id}:{flow_id}:{trigger_key}")
    state = new_session(definition, session_id=session_id, flow_id=flow_id, version=version)
    inserted = await session.execute(
        pg_insert(flow_sessions)
        .values(
            id=session_id,
            organization_id=org,
            conversation_id=target.conversation_id,
            contact_id=target.contact_id,
            number_id=target.number_id,
            flow_id=flow_id,
            version=version,
            status="active",
            state=state.model_dump(mode="json"),
            trigger_key=trigger_key[:200],
        )
        .on_conflict_do_nothing()
        .returning(flow_sessions.c.id)
    )
    if inserted.scalar_one_or_none() is None:
        return None
    await _advance(session, target, definition, state, Start(), facts)
    return session_id


#: The conversation's active session, locked (SQL text on the driver: a flow's every
#: answer reads it, and a Core statement costs several times the CPU).
_ACTIVE = """
SELECT conversation_id, contact_id, number_id, state::text AS state FROM flow_sessions
WHERE organization_id = $1 AND conversation_id = $2 AND status = 'active'
FOR UPDATE
"""


async def active(
    session: AsyncSession, org: uuid.UUID, conversation_id: uuid.UUID
) -> tuple[Target, SessionState] | None:
    """The conversation's active session, locked for this transaction."""
    conn = await rawpg.driver(session)
    row = await conn.fetchrow(_ACTIVE, org, conversation_id)
    return None if row is None else _current(org, row)


#: :data:`_ACTIVE` for several conversations, locked in one order (conversation id).
_ACTIVE_MANY = """
SELECT conversation_id, contact_id, number_id, state::text AS state FROM flow_sessions
WHERE organization_id = $1 AND conversation_id = ANY($2::uuid[]) AND status = 'active'
ORDER BY conversation_id
FOR UPDATE
"""


def _current(org: uuid.UUID, row: Any) -> tuple[Target, SessionState]:
    target = Target(
        org,
        plain(row["conversation_id"]),
        plain(row["contact_id"]),
        plain(row["number_id"]),
    )
    return target, SessionState.model_validate_json(row["state"])


async def active_many(
    session: AsyncSession, org: uuid.UUID, conversation_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[Target, SessionState]]:
    """:func:`active` for several conversations in one statement, by conversation."""
    conn = await rawpg.driver(session)
    rows = await conn.fetch(_ACTIVE_MANY, org, conversation_ids)
    found = (_current(org, row) for row in rows)
    return {current[0].conversation_id: current for current in found}


async def feed(
    session: AsyncSession,
    org: uuid.UUID,
    conversation_id: uuid.UUID,
    event: Event,
    facts: Facts | None = None,
    *,
    business_open: bool | None = None,
    message_id: uuid.UUID | None = None,
    current: tuple[Target, SessionState] | None = None,
) -> bool:
    """Give ``event`` to the conversation's active session; False when there is none.
    Without ``facts`` they are read from the replicas. A ``message_id`` already fed is
    not fed again (the same message under another event id). ``current``: the active
    session as the caller read and locked it in this transaction (else it is read)."""
    if current is None:
        current = await active(session, org, conversation_id)
    if current is None:
        return False
    target, state = current
    if message_id is not None:
        if str(message_id) in state.seen_messages:
            return True
        seen = [*state.seen_messages, str(message_id)][-SEEN_MESSAGES:]
        state = state.model_copy(update={"seen_messages": seen})
    found = await catalog.published(session, org, state.flow_id, state.version)
    if found is None:  # the flow was deleted under the session
        await _save(session, target, state.model_copy(update={"status": "ended"}), "flow_deleted")
        return True
    if facts is None:
        facts = await facts_of(session, org, target.contact_id, business_open=business_open)
    await _advance(session, target, found[1], state, event, facts)
    return True


async def stop(
    session: AsyncSession, org: uuid.UUID, conversation_id: uuid.UUID, reason: str
) -> bool:
    """End the active session (an agent replied, the conversation went to an agent)."""
    return await feed(session, org, conversation_id, Stop(reason=reason), Facts())


async def on_timer(
    session: AsyncSession, org: uuid.UUID, conversation_id: uuid.UUID, key: str, armed_by: str
) -> None:
    """A flow timer fell due: the session's wait ``armed_by`` timed out (if still current).

    The slot is emptied first: the next wait re-arms it as a new row, which the worker's
    deletion of the row it fired (by id) must not take with it."""
    await session.execute(
        delete(timers).where(
            timers.c.organization_id == org,
            timers.c.conversation_id == conversation_id,
            timers.c.kind == TIMER_KIND,
            timers.c.source_key == key,
        )
    )
    current = await active(session, org, conversation_id)
    if current is None or source_key(current[1].session_id) != key or not armed_by.isdigit():
        return
    await feed(session, org, conversation_id, Timeout(wait=int(armed_by)))


async def end_all_of_flow(
    session: AsyncSession, org: uuid.UUID, flow_id: uuid.UUID, reason: str
) -> int:
    ended = await session.execute(
        update(flow_sessions)
        .where(
            flow_sessions.c.organization_id == org,
            flow_sessions.c.flow_id == flow_id,
            flow_sessions.c.status == "active",
        )
        .values(status="ended", end_reason=reason, ended_at=func.now(), updated_at=func.now())
        .returning(flow_sessions.c.id)
    )
    keys = [source_key(i) for i in ended.scalars()]
    if keys:
        await session.execute(
            delete(timers).where(
                timers.c.organization_id == org,
                timers.c.kind == TIMER_KIND,
                timers.c.source_key.in_(keys),
            )
        )
    return len(keys)


async def _advance(
    session: AsyncSession,
    target: Target,
    definition: FlowDefinition,
    state: SessionState,
    event: Event,
    facts: Facts,
) -> None:
    before = state.emitted
    result = step(definition, state, event, facts)
    actions: list[dict[str, Any]] = list(result.actions)
    timer = result.timers[-1] if result.timers else None
    calls = 0
    while (request := result.http) is not None:
        calls += 1
        if calls > MAX_CALLS_PER_EVENT:
            result = step(definition, result.state, Stop(reason="too_many_calls"), facts)
            break
        hosts = await catalog.allowed_hosts(session, target.organization_id)
        answer = await http_client().call(request, hosts)
        if answer.error:
            log.info(
                "flow http call failed", extra={"node": request.node_id, "error": answer.error}
            )
        result = step(definition, result.state, answer, facts)
        actions += result.actions
        timer = result.timers[-1] if result.timers else timer
    state = result.state
    if actions:
        await request_actions(
            session,
            target,
            kind="flow",
            source_id=state.flow_id,
            source_key=source_key(state.session_id),
            trigger_key=f"step:{before}",
            specs=[{k: v for k, v in a.items() if k != "action_id"} for a in actions],
        )
    if state.status == "ended":
        await _save(session, target, state, state.end_reason)
        return
    if timer is not None and timer.wait == state.wait:
        await _arm(session, target, state.session_id, timer.wait, timer.after_seconds)
    await _save(session, target, state, None)


#: A flow timer (re)armed: one per session slot (SQL text on the driver).
_ARM = """
INSERT INTO timers (organization_id, conversation_id, kind, source_key, due_at, armed_by)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT ON CONSTRAINT uq_timers_slot
DO UPDATE SET due_at = excluded.due_at, armed_by = excluded.armed_by
"""


async def _arm(
    session: AsyncSession, target: Target, session_id: uuid.UUID, wait: int, after_s: int
) -> None:
    due = datetime.now(UTC) + timedelta(seconds=after_s)
    conn = await rawpg.driver(session)
    await conn.execute(
        _ARM,
        target.organization_id,
        target.conversation_id,
        TIMER_KIND,
        source_key(session_id),
        due,
        str(wait),
    )


#: A session's state saved while it goes on (SQL text on the driver).
_SAVE = """
UPDATE flow_sessions SET state = $3::text::jsonb, updated_at = now()
WHERE id = $1 AND organization_id = $2
"""


async def _save(
    session: AsyncSession, target: Target, state: SessionState, end_reason: str | None
) -> None:
    if state.status != "ended":
        conn = await rawpg.driver(session)
        await conn.execute(_SAVE, state.session_id, target.organization_id, state.model_dump_json())
        return
    values: dict[str, Any] = {
        "state": state.model_dump(mode="json"),
        "updated_at": func.now(),
        "status": "ended",
        "end_reason": (end_reason or "ended")[:40],
        "ended_at": func.now(),
    }
    await session.execute(
        delete(timers).where(
            timers.c.organization_id == target.organization_id,
            timers.c.conversation_id == target.conversation_id,
            timers.c.kind == TIMER_KIND,
            timers.c.source_key == source_key(state.session_id),
        )
    )
    await session.execute(
        update(flow_sessions)
        .where(
            flow_sessions.c.id == state.session_id,
            flow_sessions.c.organization_id == target.organization_id,
        )
        .values(**values)
    )
