"""Automatic messages: welcome, away (outside business hours), auto-resolve of idle ones.

- **welcome**: tenants' ``welcome_message``, on the customer's first message of a
  conversation the customer opened (not one a business started with a template). Once per
  conversation (its run's trigger key is the conversation).
- **away**: tenants' ``away_message``, on a customer's message while the organization is
  closed (weekly hours, holidays, its time zone); at most once per conversation per
  ``away_message_interval_minutes``. A first message outside hours gets the away message
  instead of the welcome (one automatic message, the one that says when someone answers).
- **auto-resolve**: tenants' ``auto_close_after_hours``; every message (but automation's
  own) re-arms the conversation's ``idle`` timer; when it fires on an open or pending
  conversation, automation asks for the optional closing message (automation settings'
  ``auto_resolve_message``, only while the 24-hour window is open) then ``resolved``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation.engine import Engine, Situation
from pytake_automation.tables import auto_messages

#: WhatsApp's customer-service window: a text outside it would only be recorded failed
SERVICE_WINDOW = timedelta(hours=24)


async def on_customer_message(session: AsyncSession, engine: Engine, situation: Situation) -> None:
    ctx, org = situation.ctx, situation.org_settings
    if not ctx.business_open and org.get("away_message"):
        await _away(session, engine, situation, str(org["away_message"]))
    elif (
        ctx.first_message
        and not ctx.conversation.started_by_business
        and org.get("welcome_message")
    ):
        await engine.act(
            session,
            _keyed(situation, f"welcome:{ctx.conversation.id}"),
            kind="schedule",
            source_key="welcome",
            specs=[{"type": "send_text", "text": str(org["welcome_message"])}],
        )


def _keyed(situation: Situation, trigger_key: str) -> Situation:
    """The situation with another trigger key (the fact a source runs once per)."""
    return replace(situation, ctx=replace(situation.ctx, trigger_key=trigger_key))


async def _away(session: AsyncSession, engine: Engine, situation: Situation, text: str) -> None:
    ctx = situation.ctx
    period = timedelta(minutes=situation.settings.away_message_interval_minutes)
    last = await session.scalar(
        select(auto_messages.c.sent_at).where(
            auto_messages.c.conversation_id == ctx.conversation.id,
            auto_messages.c.kind == "away",
        )
    )
    if last is not None and ctx.at - last < period:
        return
    acted = await engine.act(
        session,
        situation,
        kind="schedule",
        source_key="away",
        specs=[{"type": "send_text", "text": text}],
    )
    if acted:
        stmt = pg_insert(auto_messages).values(
            conversation_id=ctx.conversation.id,
            kind="away",
            organization_id=ctx.conversation.organization_id,
            sent_at=ctx.at,
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[auto_messages.c.conversation_id, auto_messages.c.kind],
                set_={"sent_at": stmt.excluded.sent_at},
            )
        )


async def auto_resolve(
    session: AsyncSession, engine: Engine, situation: Situation, last_inbound_at: Any
) -> None:
    ctx = situation.ctx
    if ctx.conversation.status not in ("open", "pending"):
        return
    specs: list[dict[str, Any]] = []
    closing = situation.settings.auto_resolve_message
    if closing and last_inbound_at is not None and ctx.at - last_inbound_at < SERVICE_WINDOW:
        specs.append({"type": "send_text", "text": closing})
    specs.append({"type": "set_status", "status": "resolved"})
    await engine.act(session, situation, kind="schedule", source_key="auto_resolve", specs=specs)
