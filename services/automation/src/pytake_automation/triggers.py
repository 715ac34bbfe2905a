"""From a conversation event to automation: the replica moves, then what it triggers.

Per event, in the inbox's transaction: the conversations replica is updated, the trigger's
situation is read (contact, settings: one round trip), automatic messages and the
organization's compiled rules (in memory) run, and timers are armed or cancelled.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeGuard

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation import automatic, csat, flows, sla, timers
from pytake_automation import conversation_state as state
from pytake_automation.actions import Target
from pytake_automation.engine import Engine, Situation
from pytake_automation.flows.session import SessionState
from pytake_common.events import TenantEventData

CLOSED_STATUSES = frozenset({"resolved", "closed"})


def _customer_message(d: TenantEventData) -> TypeGuard[state.Appended]:
    return isinstance(d, state.Appended) and d.direction == "inbound"


def _message_trigger(d: state.Appended, row: Any) -> tuple[str, datetime, dict[str, Any]]:
    """A customer's message as a ``message_received`` trigger: its key, time and extras."""
    extra = {
        "text": d.text or (d.reply.title if d.reply else None),
        "reply": d.reply.model_dump() if d.reply else None,
        "first_message": row.inbound_count == 1,
    }
    return f"message:{d.message_id}", d.created_at, extra


class Triggers:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def on_appended(self, session: AsyncSession, d: state.Appended) -> None:
        if d.direction == "inbound":
            moved = await self.engine.move_and_read(session, [d], _message_trigger)
            await self._on_inbound(session, d, moved.get(d.conversation_id))
            return
        row, org_settings = await state.on_outbound(session, d)
        org, conv = d.organization_id, d.conversation_id
        if d.sender_type in state.AGENT_SENDERS:
            await timers.cancel(session, org, conv, timers.NO_AGENT_REPLY)
            await sla.on_agent_reply(session, org, conv, d.created_at)
            await flows.on_agent_activity(session, org, conv, "agent_replied")
        if d.sender_type != "automation":
            await self._arm_idle(session, row, d, org_settings.get("auto_close_after_hours"))

    async def _on_inbound(
        self, session: AsyncSession, d: state.Appended, moved: tuple[Any, Situation] | None
    ) -> None:
        """A customer's message alone: ``moved``, the replica row and situation when the
        conversation was known (else this is its first event: the row is made here)."""
        if moved is None:
            row = await state.on_appended(session, d)
            key, at, extra = _message_trigger(d, row)
            situation = await self.engine.situation(
                session, row, "message_received", key, at, **extra
            )
        else:
            row, situation = moved
        if not await self._flow_takes(session, d, situation):
            await automatic.on_customer_message(session, self.engine, situation)
            await self.engine.run_rules(session, situation)
        await self._after_message(session, d, row, situation)

    async def on_customer_messages(
        self, session: AsyncSession, messages: list[state.Appended]
    ) -> None:
        """Customers' messages on distinct conversations of one organization (a batch's),
        as :meth:`on_appended` one by one would handle them, in a few statements: the
        replica moved and the situations read in one, the rules' runs and requests staged
        in one each. Each conversation's steps keep their order (flow, automatic messages,
        rules, timers, CSAT); different conversations' steps interleave."""
        moved = await self.engine.move_and_read(session, messages, _message_trigger)
        known: list[tuple[state.Appended, Any, Situation]] = []
        for d in messages:
            found = moved.get(d.conversation_id)
            if found is None:
                await self._on_inbound(session, d, None)  # its first event: the row is made
            else:
                known.append((d, *found))
        # the active flow sessions of those that have one: read and locked at once
        in_flows = [d.conversation_id for d, _, situation in known if situation.flow_active]
        sessions = (
            await flows.sessions.active_many(session, messages[0].organization_id, in_flows)
            if in_flows
            else {}
        )
        for_rules: list[Situation] = []
        for d, _, situation in known:
            current = sessions.get(d.conversation_id)
            if not await self._flow_takes(session, d, situation, current):
                await automatic.on_customer_message(session, self.engine, situation)
                for_rules.append(situation)
        await self.engine.run_rules_many(session, for_rules)
        for d, row, situation in known:
            await self._after_message(session, d, row, situation)

    async def _flow_takes(
        self,
        session: AsyncSession,
        d: state.Appended,
        situation: Situation,
        current: tuple[Target, SessionState] | Literal["unread"] | None = "unread",
    ) -> bool:
        """An active flow answers first (a message that starts a flow through a rule is
        not also the flow's first answer); what a flow took, rules do not see. ``current``:
        the active session if the caller read and locked it."""
        return situation.flow_active and await flows.on_customer_message(
            session,
            d.organization_id,
            d.conversation_id,
            text=d.text,
            reply=d.reply.model_dump() if d.reply else None,
            message_id=d.message_id,
            business_open=situation.ctx.business_open,
            contact=situation.ctx.contact,
            current=current,
        )

    async def _after_message(
        self, session: AsyncSession, d: state.Appended, row: Any, situation: Situation
    ) -> None:
        """A customer's message, after flows and rules: its timers, CSAT, idle."""
        org, conv = d.organization_id, d.conversation_id
        rule_set = await self.engine.cache.rules(session, org)
        for rule in rule_set.timer_rules(timers.NO_AGENT_REPLY):
            assert rule.minutes is not None
            await timers.arm(
                session,
                org,
                conv,
                timers.NO_AGENT_REPLY,
                f"rule:{rule.id}",
                d.created_at + timedelta(minutes=rule.minutes),
                str(d.message_id),
                keep_earlier=True,
            )
        if situation.csat_pending:
            await csat.on_inbound(
                session,
                org,
                conv,
                d.contact_id,
                at=d.created_at,
                text=d.reply.title if d.reply else d.text,
                reply_id=d.reply.id if d.reply else None,
                number_id=row.number_id,
            )
        if d.sender_type != "automation":
            hours = situation.org_settings.get("auto_close_after_hours")
            await self._arm_idle(session, row, d, hours)

    async def on_conversation_events(
        self, session: AsyncSession, facts: list[TenantEventData]
    ) -> None:
        """A batch's run of conversation events of one organization, in order: each run of
        customers' messages on distinct conversations at once
        (:meth:`on_customer_messages`), every other event alone."""
        i = 0
        while i < len(facts):
            messages: list[state.Appended] = []
            seen: set[uuid.UUID] = set()
            while i < len(facts):
                d = facts[i]
                if not _customer_message(d) or d.conversation_id in seen:
                    break
                messages.append(d)
                seen.add(d.conversation_id)
                i += 1
            if len(messages) > 1:
                await self.on_customer_messages(session, messages)
            elif messages:
                await self.on_appended(session, messages[0])
            else:
                await self._on_one(session, facts[i])
                i += 1

    async def _on_one(self, session: AsyncSession, d: TenantEventData) -> None:
        if isinstance(d, state.Appended):
            await self.on_appended(session, d)
        elif isinstance(d, state.Opened):
            await self.on_opened(session, d)
        elif isinstance(d, state.StatusMoved):
            await self.on_status(session, d)
        elif isinstance(d, state.Assigned):
            await self.on_assigned(session, d)
        elif isinstance(d, state.PriorityChanged):
            await self.on_priority(session, d)
        else:  # pragma: no cover - the handler table registers only these
            raise TypeError(type(d).__name__)

    async def _arm_idle(
        self, session: AsyncSession, row: Row[Any], d: state.Appended, hours: Any
    ) -> None:
        if not hours or row.status in CLOSED_STATUSES:
            return
        await timers.arm(
            session,
            d.organization_id,
            d.conversation_id,
            timers.IDLE,
            "auto_resolve",
            d.created_at + timedelta(hours=float(hours)),
            str(d.message_id),
            keep_earlier=False,
        )

    async def on_opened(self, session: AsyncSession, d: state.Opened) -> None:
        row = await state.on_opened(session, d)
        if await self.engine.has_rules(session, d.organization_id, "conversation_opened"):
            situation = await self.engine.situation(
                session,
                row,
                "conversation_opened",
                f"opened:{d.conversation_id}:{d.opened_at.isoformat()}",
                d.opened_at,
            )
            await self.engine.run_rules(session, situation)
        # a conversation the business started (an agent's start) owes no response time
        business = d.started_by is not None
        await sla.on_opened(
            session, d.organization_id, d.conversation_id, d.opened_at, business, row
        )
        if row.assignee_id is None:
            await self._arm_unassigned(
                session, row, f"opened:{d.opened_at.isoformat()}", d.opened_at
            )

    async def _arm_unassigned(
        self, session: AsyncSession, row: Row[Any], armed_by: str, at: Any
    ) -> None:
        rule_set = await self.engine.cache.rules(session, row.organization_id)
        for rule in rule_set.timer_rules(timers.UNASSIGNED):
            assert rule.minutes is not None
            await timers.arm(
                session,
                row.organization_id,
                row.id,
                timers.UNASSIGNED,
                f"rule:{rule.id}",
                at + timedelta(minutes=rule.minutes),
                armed_by,
                keep_earlier=True,
            )

    async def on_status(self, session: AsyncSession, d: state.StatusMoved) -> None:
        row = await state.on_status(session, d)
        if d.new_status in CLOSED_STATUSES:
            await timers.cancel(session, d.organization_id, d.conversation_id)
            await sla.on_finished(session, d.organization_id, d.conversation_id, d.at)
            await flows.on_agent_activity(
                session, d.organization_id, d.conversation_id, f"conversation_{d.new_status}"
            )
        if d.new_status == "resolved":
            await csat.on_resolved(session, d.organization_id, d.conversation_id, d.at)
        if not await self.engine.has_rules(session, d.organization_id, "status_changed"):
            return
        situation = await self.engine.situation(
            session,
            row,
            "status_changed",
            f"status:{d.conversation_id}:{d.new_status}:{d.at.isoformat()}",
            d.at,
            new_status=d.new_status,
            actor_type=d.actor_type,
            actor_id=d.actor_id,
        )
        await self.engine.run_rules(session, situation)

    async def on_assigned(self, session: AsyncSession, d: state.Assigned) -> None:
        row = await state.on_assigned(session, d)
        if d.assignee_id is not None:
            await timers.cancel(session, d.organization_id, d.conversation_id, timers.UNASSIGNED)
            await flows.on_agent_activity(
                session, d.organization_id, d.conversation_id, "assigned_to_agent"
            )
        elif row.status not in CLOSED_STATUSES:
            await self._arm_unassigned(session, row, f"unassigned:{d.at.isoformat()}", d.at)
        if not await self.engine.has_rules(session, d.organization_id, "assigned"):
            return
        situation = await self.engine.situation(
            session,
            row,
            "assigned",
            f"assigned:{d.conversation_id}:{d.at.isoformat()}",
            d.at,
            actor_type=d.actor_type,
            actor_id=d.actor_id,
        )
        await self.engine.run_rules(session, situation)

    async def on_timer(self, session: AsyncSession, timer: Row[Any]) -> None:
        """A due timer (the worker's transaction, bound to no organization)."""
        if timer.kind in sla.TIMER_KINDS:
            await sla.fire(session, timer, datetime.now(UTC))
            return
        if timer.kind == flows.TIMER_KIND:
            await flows.on_timer(
                session,
                timer.organization_id,
                timer.conversation_id,
                timer.source_key,
                timer.armed_by,
            )
            return
        row = await state.load(session, timer.organization_id, timer.conversation_id)
        if row is None or row.status in CLOSED_STATUSES:
            return
        now = datetime.now(UTC)
        key = f"{timer.kind}:{timer.armed_by}"
        if timer.kind == timers.IDLE:
            situation = await self.engine.situation(session, row, "idle", key, now)
            await automatic.auto_resolve(session, self.engine, situation, row.last_inbound_at)
            return
        if timer.kind == timers.UNASSIGNED and row.assignee_id is not None:
            return
        rule_id = uuid.UUID(timer.source_key.removeprefix("rule:"))
        situation = await self.engine.situation(
            session, row, timer.kind, key, now, timer_rule_id=rule_id
        )
        await self.engine.run_rules(session, situation)

    async def on_priority(self, session: AsyncSession, d: state.PriorityChanged) -> None:
        """The replica (rules read the priority as a condition; no trigger of its own) and
        the SLA, whose due times depend on it."""
        await state.on_priority(session, d)
        await sla.on_priority(session, d.organization_id, d.conversation_id, d.new_priority)
