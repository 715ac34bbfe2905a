"""From a conversation event to automation: the replica moves, then what it triggers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation import conversation_state as state
from pytake_automation import csat, sla
from pytake_common.events import CloudEvent


async def on_appended(session: AsyncSession, event: CloudEvent, d: state.Appended) -> None:
    row = await state.on_appended(session, d)
    org, conv_id = d.organization_id, d.conversation_id
    if d.direction == "outbound" and d.sender_type in state.AGENT_SENDERS:
        await sla.on_agent_reply(session, org, conv_id, d.created_at)
    elif d.direction == "inbound":
        await csat.on_inbound(
            session,
            org,
            conv_id,
            d.contact_id,
            at=d.created_at,
            text=d.reply.title if d.reply else d.text,
            reply_id=d.reply.id if d.reply else None,
            number_id=row.number_id,
        )


async def on_opened(session: AsyncSession, event: CloudEvent, d: state.Opened) -> None:
    await state.on_opened(session, d)
    # a conversation the business started (an agent's start) owes no response time
    business = d.started_by is not None
    await sla.on_opened(session, d.organization_id, d.conversation_id, d.opened_at, business)


async def on_status(session: AsyncSession, event: CloudEvent, d: state.StatusMoved) -> None:
    await state.on_status(session, d)
    if d.new_status in ("resolved", "closed"):
        await sla.on_finished(session, d.organization_id, d.conversation_id, d.at)
    if d.new_status == "resolved":
        await csat.on_resolved(session, d.organization_id, d.conversation_id, d.at)


async def on_assigned(session: AsyncSession, event: CloudEvent, d: state.Assigned) -> None:
    await state.on_assigned(session, d)


async def on_priority(session: AsyncSession, event: CloudEvent, d: state.PriorityChanged) -> None:
    await sla.on_priority(session, d.organization_id, d.conversation_id, d.new_priority)
