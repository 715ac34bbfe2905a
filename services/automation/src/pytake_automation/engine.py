"""The engine: a trigger on a conversation → automatic messages, rules, flows; recorded runs.

Everything happens in the caller's transaction (the inbox's for an event, the timer
worker's for a timer), so what automation decides and what it asks (the outbox) commit
together with the fact that the trigger was handled. A run is unique per (source,
trigger key): the same fact handled again — a redelivered event, a republished one under
another event id, a timer claimed twice — finds its run and asks nothing.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation import automation_settings, flows
from pytake_automation.actions import SourceKind, actions_requested, request_actions, run_id
from pytake_automation.automation_settings import AutomationSettings
from pytake_automation.business_hours import Schedule, schedule_of
from pytake_automation.config import Settings
from pytake_automation.context import ContactView, ConversationView, TriggerContext
from pytake_automation.conversation_state import Appended, as_row
from pytake_automation.csat import COMMENT_WINDOW
from pytake_automation.matching import CompiledRule, select_rules
from pytake_automation.rule_cache import RuleCache
from pytake_automation.tables import runs
from pytake_common import rawpg
from pytake_common.errors import DomainError
from pytake_common.events import EventData
from pytake_common.outbox import emit_many

log = logging.getLogger(__name__)

#: The situation around a trigger, one statement (SQL text on the driver: a Core statement
#: this size costs several times the CPU to build and run): both settings documents, the
#: contact, and for a customer's message (``$4``) whether the conversation has an active
#: flow session and whether the contact has a survey ``csat.on_inbound`` could find (one
#: still waiting for its rating, of any age: a list reply names it; or one rated within
#: the comment window, ``$5`` on, without a comment; ``csat.SENT``, ``csat.ANSWERED``): a
#: superset of what it looks for. For other triggers both are true (not looked at).
_SITUATION = """
SELECT (SELECT settings FROM organizations WHERE organization_id = $1) AS org_settings,
       (SELECT settings FROM settings WHERE organization_id = $1) AS auto_settings,
       c.name, c.blocked, c.erased, c.tag_ids, c.attributes,
       (NOT $4 OR EXISTS (
           SELECT 1 FROM flow_sessions f
           WHERE f.organization_id = $1 AND f.conversation_id = $2 AND f.status = 'active'
       )) AS flow_active,
       (NOT $4 OR EXISTS (
           SELECT 1 FROM csat_surveys s
           WHERE s.organization_id = $1 AND s.contact_id = $3
             AND (s.status = 'sent'
                  OR (s.status = 'answered' AND s.comment IS NULL AND s.answered_at > $5))
       )) AS csat_pending
FROM (SELECT 1) AS one
LEFT JOIN contacts c ON c.id = $3 AND c.organization_id = $1
"""


#: Customers' messages on distinct known conversations of one organization (``$2`` the
#: conversations, ``$3`` the messages' times, ``$4`` each one's comment-window start): the
#: replica moved (every message but a conversation's first) and :data:`_SITUATION` read
#: for each, in one statement; a conversation the replica does not know is not returned.
_MOVE_AND_READ = """
WITH moved AS (
    UPDATE conversations c
    SET last_message_at = greatest(c.last_message_at, m.at),
        inbound_count = c.inbound_count + 1,
        last_inbound_at = greatest(c.last_inbound_at, m.at),
        updated_at = now()
    FROM unnest($2::uuid[], $3::timestamptz[], $4::timestamptz[]) AS m(id, at, since)
    WHERE c.id = m.id AND c.organization_id = $1
    RETURNING c.*, m.since
)
SELECT moved.*,
       (SELECT settings FROM organizations WHERE organization_id = $1) AS org_settings,
       (SELECT settings FROM settings WHERE organization_id = $1) AS auto_settings,
       k.name, k.blocked, k.erased, k.tag_ids, k.attributes,
       EXISTS (
           SELECT 1 FROM flow_sessions f
           WHERE f.organization_id = $1 AND f.conversation_id = moved.id AND f.status = 'active'
       ) AS flow_active,
       EXISTS (
           SELECT 1 FROM csat_surveys s
           WHERE s.organization_id = $1 AND s.contact_id = moved.contact_id
             AND (s.status = 'sent'
                  OR (s.status = 'answered' AND s.comment IS NULL AND s.answered_at > moved.since))
       ) AS csat_pending
FROM moved
LEFT JOIN contacts k ON k.id = moved.contact_id AND k.organization_id = $1
"""

#: The runs of several triggers in one statement (``record_runs`` for a batch).
_RUNS_MANY = """
INSERT INTO runs (id, organization_id, source_key, rule_id, conversation_id, trigger_key,
                  trigger, outcome, actions, action_count, detail)
SELECT r.id, $1, r.source_key, r.rule_id, r.conversation_id, r.trigger_key, r.trigger,
       r.outcome, r.actions::jsonb, r.action_count, r.detail
FROM unnest($2::uuid[], $3::text[], $4::uuid[], $5::uuid[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::int[], $11::text[])
    AS r(id, source_key, rule_id, conversation_id, trigger_key, trigger, outcome, actions,
         action_count, detail)
ON CONFLICT DO NOTHING
RETURNING id
"""

#: Actions recorded in the last minute per conversation (``budget`` for a batch).
_RECENT_ACTIONS = """
SELECT coalesce((
    SELECT sum(r.action_count) FROM runs r
    WHERE r.organization_id = $1 AND r.conversation_id = m.conv
      AND r.created_at > now() - interval '1 minute'
), 0) AS recent
FROM unnest($2::uuid[]) WITH ORDINALITY AS m(conv, ord)
ORDER BY m.ord
"""


@dataclass(frozen=True, slots=True)
class Situation:
    """A trigger with the organization's settings it was evaluated under."""

    ctx: TriggerContext
    org_settings: Mapping[str, Any]
    settings: AutomationSettings
    #: ``message_received`` only (else True: not looked at): whether the conversation has an
    #: active flow session, and whether the contact has a survey a message could rate or
    #: comment on; when False, the flows' and CSAT's own reads (with their locks) are skipped
    flow_active: bool = True
    csat_pending: bool = True
    #: the organization's business hours, as read with the settings
    schedule: Schedule | None = None


def _situation_of(
    found: Any,
    conversation: Any,
    trigger: str,
    trigger_key: str,
    at: datetime,
    extra: Mapping[str, Any],
    shared: Situation | None = None,
) -> Situation:
    """A situation from a row of :data:`_SITUATION` (or :data:`_MOVE_AND_READ`); ``shared``:
    another situation of the same read, whose settings (parsed once) it shares."""
    org_settings: Mapping[str, Any] = found["org_settings"] or {}
    if shared is not None and shared.schedule is not None:
        schedule, settings = shared.schedule, shared.settings
    else:
        schedule = schedule_of(dict(org_settings))
        settings = automation_settings.of(found["auto_settings"])
    contact = ContactView(
        id=conversation.contact_id,
        name=found["name"],
        blocked=bool(found["blocked"]),
        erased=bool(found["erased"]),
        tag_ids=frozenset(uuid.UUID(bytes=t.bytes) for t in found["tag_ids"] or ()),
        attributes=dict(found["attributes"] or {}),
    )
    ctx = TriggerContext(
        trigger=trigger,
        trigger_key=trigger_key,
        at=at,
        conversation=ConversationView.of(conversation),
        contact=contact,
        business_open=schedule.is_open(at),
        **extra,
    )
    return Situation(
        ctx,
        org_settings,
        settings,
        flow_active=bool(found["flow_active"]),
        csat_pending=bool(found["csat_pending"]),
        schedule=schedule,
    )


def _starts_flow(rules: Sequence[CompiledRule]) -> bool:
    return any(action["type"] == "start_flow" for rule in rules for action in rule.actions)


class Engine:
    def __init__(self, settings: Settings, cache: RuleCache) -> None:
        self.settings = settings
        self.cache = cache

    async def situation(
        self,
        session: AsyncSession,
        conversation: Row[Any],
        trigger: str,
        trigger_key: str,
        at: datetime,
        **extra: Any,
    ) -> Situation:
        """Read the contact and both settings documents (one round trip) around a trigger;
        for ``message_received``, also whether a flow session or a survey may want it."""
        org = conversation.organization_id
        conn = await rawpg.driver(session)
        found = await conn.fetchrow(
            _SITUATION,
            org,
            conversation.id,
            conversation.contact_id,
            trigger == "message_received",
            at - COMMENT_WINDOW,
        )
        assert found is not None
        return _situation_of(found, conversation, trigger, trigger_key, at, extra)

    async def move_and_read(
        self,
        session: AsyncSession,
        messages: Sequence[Appended],
        trigger_of: Callable[[Appended, Any], tuple[str, datetime, dict[str, Any]]],
    ) -> dict[uuid.UUID, tuple[Any, Situation]]:
        """Customers' messages on distinct conversations of one organization: the replica
        moved and each message's ``message_received`` situation, in one statement. By
        conversation, the row after and the situation (``trigger_of(message, row)``: its
        key, time and extras); a conversation the replica does not know yet is missing."""
        conn = await rawpg.driver(session)
        found = await conn.fetch(
            _MOVE_AND_READ,
            messages[0].organization_id,
            [d.conversation_id for d in messages],
            [d.created_at for d in messages],
            [d.created_at - COMMENT_WINDOW for d in messages],
        )
        by_conversation = {d.conversation_id: d for d in messages}
        out: dict[uuid.UUID, tuple[Any, Situation]] = {}
        shared: Situation | None = None
        for record in found:
            row = as_row(record)
            key, at, extra = trigger_of(by_conversation[row.id], row)
            situation = _situation_of(record, row, "message_received", key, at, extra, shared)
            shared = shared or situation
            out[row.id] = (row, situation)
        return out

    # --- rules ----------------------------------------------------------------------------

    async def run_rules(self, session: AsyncSession, situation: Situation) -> list[CompiledRule]:
        """Fire the matching rules: one budget read, one insert of all their runs, then one
        ``actions_requested`` per rule that acted (a few statements however many match)."""
        chosen = await self._chosen(session, situation)
        if chosen and _starts_flow(chosen):
            await self._run_starting_flow(session, situation, chosen)
        elif chosen:
            await self._fire(session, [(situation, chosen)])
        return chosen

    async def run_rules_many(self, session: AsyncSession, situations: Sequence[Situation]) -> None:
        """:meth:`run_rules` for triggers on distinct conversations of one organization:
        one budget read, one insert of all their runs, one outbox statement. A trigger whose
        rules start a flow goes alone (the flow's first messages come after its rule's
        actions)."""
        fired: list[tuple[Situation, list[CompiledRule]]] = []
        for situation in situations:
            chosen = await self._chosen(session, situation)
            if chosen and _starts_flow(chosen):
                await self._run_starting_flow(session, situation, chosen)
            elif chosen:
                fired.append((situation, chosen))
        await self._fire(session, fired)

    async def has_rules(self, session: AsyncSession, org: uuid.UUID, trigger: str) -> bool:
        """Whether any enabled rule of ``org`` has ``trigger`` (the cached set, in memory):
        when none has, a trigger's situation need not even be read."""
        rule_set = await self.cache.rules(session, org)
        return bool(rule_set.by_trigger.get(trigger))

    async def _chosen(self, session: AsyncSession, situation: Situation) -> list[CompiledRule]:
        """The rules that act on the situation's trigger, in order (in memory)."""
        ctx = situation.ctx
        rule_set = await self.cache.rules(session, ctx.conversation.organization_id)
        candidates = rule_set.by_trigger.get(ctx.trigger, ())
        return select_rules(candidates, ctx) if candidates else []

    async def _run_starting_flow(
        self, session: AsyncSession, situation: Situation, chosen: list[CompiledRule]
    ) -> None:
        """Rules of which one starts a flow: each rule's actions, then its flow, in order."""
        ctx = situation.ctx
        budget = await self.budget(session, situation)
        planned: list[tuple[CompiledRule, str]] = []
        for rule in chosen:
            cost = len(rule.actions)
            planned.append((rule, "acted" if cost <= budget else "rate_limited"))
            budget -= cost if cost <= budget else 0
        claimed = await self.record_runs(
            session,
            ctx,
            [
                (f"rule:{rule.id}", rule.id, outcome, rule.actions if outcome == "acted" else ())
                for rule, outcome in planned
            ],
        )
        for rule, outcome in planned:
            if outcome == "acted" and f"rule:{rule.id}" in claimed:
                await self._act_for(session, ctx, rule)

    async def _fire(
        self, session: AsyncSession, fired: Sequence[tuple[Situation, list[CompiledRule]]]
    ) -> None:
        """The chosen rules of triggers on distinct conversations of one organization (none
        starting a flow): one budget read, one insert of their runs, one outbox statement."""
        if not fired:
            return
        org = fired[0][0].ctx.conversation.organization_id
        conn = await rawpg.driver(session)
        recent = await conn.fetch(_RECENT_ACTIONS, org, [s.ctx.conversation.id for s, _ in fired])
        planned: list[tuple[TriggerContext, CompiledRule, str]] = []
        for (situation, chosen), row in zip(fired, recent, strict=True):
            budget = self.cap(situation) - int(row["recent"])
            for rule in chosen:
                cost = len(rule.actions)
                planned.append((situation.ctx, rule, "acted" if cost <= budget else "rate_limited"))
                budget -= cost if cost <= budget else 0
        claimed = await self._record_runs_many(session, org, planned)
        payloads: list[tuple[EventData, uuid.UUID]] = []
        for ctx, rule, outcome in planned:
            source_key = f"rule:{rule.id}"
            if outcome != "acted" or run_id(source_key, ctx.trigger_key) not in claimed:
                continue
            payload = actions_requested(
                ctx.target,
                kind="rule",
                source_id=rule.id,
                source_key=source_key,
                trigger_key=ctx.trigger_key,
                specs=rule.actions,
            )
            if payload is not None:
                payloads.append((payload, ctx.conversation.id))
        await emit_many(session, payloads)

    async def _record_runs_many(
        self,
        session: AsyncSession,
        org: uuid.UUID,
        planned: Sequence[tuple[TriggerContext, CompiledRule, str]],
    ) -> set[uuid.UUID]:
        """The rules' runs of several triggers in one statement; the ids that were new."""
        conn = await rawpg.driver(session)
        rows = [
            (
                run_id(f"rule:{rule.id}", ctx.trigger_key),
                f"rule:{rule.id}",
                rule.id,
                ctx.conversation.id,
                ctx.trigger_key,
                ctx.trigger,
                outcome,
                json.dumps(list(rule.actions) if outcome == "acted" else []),
                len(rule.actions) if outcome == "acted" else 0,
                "actions per minute cap" if outcome == "rate_limited" else None,
            )
            for ctx, rule, outcome in planned
        ]
        inserted = await conn.fetch(
            _RUNS_MANY, org, *(list(column) for column in zip(*rows, strict=True))
        )
        return {uuid.UUID(bytes=r["id"].bytes) for r in inserted}

    async def _act_for(
        self, session: AsyncSession, ctx: TriggerContext, rule: CompiledRule
    ) -> None:
        source_key = f"rule:{rule.id}"
        await request_actions(
            session,
            ctx.target,
            kind="rule",
            source_id=rule.id,
            source_key=source_key,
            trigger_key=ctx.trigger_key,
            specs=[a for a in rule.actions if a["type"] != "start_flow"],
        )
        for action in rule.actions:
            if action["type"] != "start_flow":
                continue
            try:
                async with session.begin_nested():
                    await flows.start_flow(session, ctx, uuid.UUID(str(action["flow_id"])))
            except DomainError as exc:
                await session.execute(
                    update(runs)
                    .where(runs.c.id == run_id(source_key, ctx.trigger_key))
                    .values(outcome="failed", detail=f"{exc.code}: {exc.detail}"[:500])
                )

    # --- runs -----------------------------------------------------------------------------

    async def record_runs(
        self,
        session: AsyncSession,
        ctx: TriggerContext,
        planned: Sequence[tuple[str, uuid.UUID | None, str, Sequence[Mapping[str, Any]]]],
    ) -> set[str]:
        """Insert the runs (source key, rule, outcome, actions) of one trigger; the source keys
        that were new (the others ran before: a redelivery)."""
        org, conv = ctx.conversation.organization_id, ctx.conversation.id
        rows = [
            {
                "id": run_id(source_key, ctx.trigger_key),
                "organization_id": org,
                "source_key": source_key,
                "rule_id": rule_id,
                "conversation_id": conv,
                "trigger_key": ctx.trigger_key,
                "trigger": ctx.trigger,
                "outcome": outcome,
                "actions": list(actions),
                "action_count": len(actions),
                "detail": "actions per minute cap" if outcome == "rate_limited" else None,
            }
            for source_key, rule_id, outcome, actions in planned
        ]
        result = await session.execute(
            pg_insert(runs).values(rows).on_conflict_do_nothing().returning(runs.c.source_key)
        )
        return set(result.scalars())

    def cap(self, situation: Situation) -> int:
        """Actions per conversation per minute: the organization's cap, else the service's."""
        return (
            situation.settings.actions_per_conversation_per_minute
            or self.settings.actions_per_conversation_per_minute
        )

    async def budget(self, session: AsyncSession, situation: Situation) -> int:
        """Loop protection: how many more automatic actions the conversation may get this
        minute (the organization's cap, else the service's)."""
        cap = self.cap(situation)
        ctx = situation.ctx
        recent = await session.scalar(
            select(func.coalesce(func.sum(runs.c.action_count), 0)).where(
                runs.c.organization_id == ctx.conversation.organization_id,
                runs.c.conversation_id == ctx.conversation.id,
                runs.c.created_at > func.now() - timedelta(minutes=1),
            )
        )
        return cap - int(recent or 0)

    async def act(
        self,
        session: AsyncSession,
        situation: Situation,
        *,
        kind: SourceKind,
        source_key: str,
        specs: Sequence[Mapping[str, Any]],
        source_id: uuid.UUID | None = None,
    ) -> bool:
        """Run a non-rule source once per trigger (automatic messages, auto-resolve):
        record its run within the cap, ask. False when it did not act."""
        ctx = situation.ctx
        acted = len(specs) <= await self.budget(session, situation)
        outcome = "acted" if acted else "rate_limited"
        claimed = await self.record_runs(
            session, ctx, [(source_key, None, outcome, specs if acted else ())]
        )
        if not acted or source_key not in claimed:
            return False
        await request_actions(
            session,
            ctx.target,
            kind=kind,
            source_id=source_id,
            source_key=source_key,
            trigger_key=ctx.trigger_key,
            specs=specs,
        )
        return True
