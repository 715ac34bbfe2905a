"""The engine: a trigger on a conversation → automatic messages, rules, flows; recorded runs.

Everything happens in the caller's transaction (the inbox's for an event, the timer
worker's for a timer), so what automation decides and what it asks (the outbox) commit
together with the fact that the trigger was handled. A run is unique per (source,
trigger key): the same fact handled again — a redelivered event, a republished one under
another event id, a timer claimed twice — finds its run and asks nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation import automation_settings, flows
from pytake_automation.actions import SourceKind, request_actions, run_id
from pytake_automation.automation_settings import AutomationSettings
from pytake_automation.business_hours import schedule_of
from pytake_automation.config import Settings
from pytake_automation.context import ContactView, ConversationView, TriggerContext
from pytake_automation.csat import COMMENT_WINDOW
from pytake_automation.matching import CompiledRule, select_rules
from pytake_automation.rule_cache import RuleCache
from pytake_automation.tables import runs
from pytake_common import rawpg
from pytake_common.errors import DomainError

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
        org_settings: Mapping[str, Any] = found["org_settings"] or {}
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
            business_open=schedule_of(dict(org_settings)).is_open(at),
            **extra,
        )
        return Situation(
            ctx,
            org_settings,
            automation_settings.of(found["auto_settings"]),
            flow_active=bool(found["flow_active"]),
            csat_pending=bool(found["csat_pending"]),
        )

    # --- rules ----------------------------------------------------------------------------

    async def run_rules(self, session: AsyncSession, situation: Situation) -> list[CompiledRule]:
        """Fire the matching rules: one budget read, one insert of all their runs, then one
        ``actions_requested`` per rule that acted (a few statements however many match)."""
        ctx = situation.ctx
        rule_set = await self.cache.rules(session, ctx.conversation.organization_id)
        candidates = rule_set.by_trigger.get(ctx.trigger, ())
        if not candidates:
            return []
        chosen = select_rules(candidates, ctx)
        if not chosen:
            return []
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
        return chosen

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

    async def budget(self, session: AsyncSession, situation: Situation) -> int:
        """Loop protection: how many more automatic actions the conversation may get this
        minute (the organization's cap, else the service's)."""
        cap = (
            situation.settings.actions_per_conversation_per_minute
            or self.settings.actions_per_conversation_per_minute
        )
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
