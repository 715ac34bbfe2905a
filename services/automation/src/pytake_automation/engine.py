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
from pytake_automation.matching import CompiledRule, select_rules
from pytake_automation.rule_cache import RuleCache
from pytake_automation.tables import contacts, organizations, runs
from pytake_automation.tables import settings as settings_table
from pytake_common.errors import DomainError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Situation:
    """A trigger with the organization's settings it was evaluated under."""

    ctx: TriggerContext
    org_settings: Mapping[str, Any]
    settings: AutomationSettings


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
        """Read the contact and both settings documents (one round trip) around a trigger."""
        org = conversation.organization_id
        org_doc = (
            select(organizations.c.settings)
            .where(organizations.c.organization_id == org)
            .scalar_subquery()
        )
        auto_doc = (
            select(settings_table.c.settings)
            .where(settings_table.c.organization_id == org)
            .scalar_subquery()
        )
        found = (
            await session.execute(
                select(
                    org_doc.label("org_settings"),
                    auto_doc.label("auto_settings"),
                    contacts.c.name,
                    contacts.c.blocked,
                    contacts.c.erased,
                    contacts.c.tag_ids,
                    contacts.c.attributes,
                ).outerjoin_from(
                    select(func.now()).subquery(),
                    contacts,
                    (contacts.c.id == conversation.contact_id)
                    & (contacts.c.organization_id == org),
                )
            )
        ).one()
        org_settings: Mapping[str, Any] = found.org_settings or {}
        contact = ContactView(
            id=conversation.contact_id,
            name=found.name,
            blocked=bool(found.blocked),
            erased=bool(found.erased),
            tag_ids=frozenset(found.tag_ids or ()),
            attributes=dict(found.attributes or {}),
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
        return Situation(ctx, org_settings, automation_settings.of(found.auto_settings))

    # --- rules ----------------------------------------------------------------------------

    async def run_rules(self, session: AsyncSession, situation: Situation) -> list[CompiledRule]:
        ctx = situation.ctx
        rule_set = await self.cache.rules(session, ctx.conversation.organization_id)
        candidates = rule_set.by_trigger.get(ctx.trigger, ())
        if not candidates:
            return []
        chosen = select_rules(candidates, ctx)
        for rule in chosen:
            await self.fire(session, situation, rule)
        return chosen

    async def fire(self, session: AsyncSession, situation: Situation, rule: CompiledRule) -> None:
        ctx = situation.ctx
        source_key = f"rule:{rule.id}"
        specs = [a for a in rule.actions if a["type"] != "start_flow"]
        flow_ids = [uuid.UUID(str(a["flow_id"])) for a in rule.actions if a["type"] == "start_flow"]
        run = await self.claim_run(session, ctx, source_key, rule.id)
        if run is None:
            return  # this trigger was handled before
        if not await self.within_cap(session, situation, len(rule.actions)):
            await self.finish_run(session, run, "rate_limited", [], "actions per minute cap")
            return
        await request_actions(
            session,
            ctx.target,
            kind="rule",
            source_id=rule.id,
            source_key=source_key,
            trigger_key=ctx.trigger_key,
            specs=specs,
        )
        outcome, detail = "acted", None
        for flow_id in flow_ids:
            try:
                async with session.begin_nested():
                    await flows.start_flow(session, ctx, flow_id)
            except DomainError as exc:
                outcome, detail = "failed", f"{exc.code}: {exc.detail}"[:500]
        await self.finish_run(session, run, outcome, list(rule.actions), detail)

    # --- runs -----------------------------------------------------------------------------

    async def claim_run(
        self,
        session: AsyncSession,
        ctx: TriggerContext,
        source_key: str,
        rule_id: uuid.UUID | None = None,
    ) -> uuid.UUID | None:
        """The new run's id, or None when (source, trigger) already ran."""
        claimed: uuid.UUID | None = await session.scalar(
            pg_insert(runs)
            .values(
                id=run_id(source_key, ctx.trigger_key),
                organization_id=ctx.conversation.organization_id,
                source_key=source_key,
                rule_id=rule_id,
                conversation_id=ctx.conversation.id,
                trigger_key=ctx.trigger_key,
                trigger=ctx.trigger,
                outcome="running",
            )
            .on_conflict_do_nothing()
            .returning(runs.c.id)
        )
        return claimed

    async def finish_run(
        self,
        session: AsyncSession,
        run: uuid.UUID,
        outcome: str,
        actions: Sequence[Mapping[str, Any]],
        detail: str | None = None,
    ) -> None:
        await session.execute(
            update(runs)
            .where(runs.c.id == run)
            .values(
                outcome=outcome, actions=list(actions), action_count=len(actions), detail=detail
            )
        )

    async def within_cap(self, session: AsyncSession, situation: Situation, adding: int) -> bool:
        """Loop protection: automatic actions on the conversation in the last minute."""
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
        return int(recent or 0) + adding <= cap

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
        claim its run, respect the cap, ask. False when it did not act."""
        ctx = situation.ctx
        run = await self.claim_run(session, ctx, source_key)
        if run is None:
            return False
        if not await self.within_cap(session, situation, len(specs)):
            await self.finish_run(session, run, "rate_limited", [], "actions per minute cap")
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
        await self.finish_run(session, run, "acted", specs)
        return True
