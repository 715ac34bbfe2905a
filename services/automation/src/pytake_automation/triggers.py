"""From a conversation event to automation: the replica moves, then what it triggers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation import conversation_state as state
from pytake_automation import flows
from pytake_common.events import CloudEvent


async def on_appended(session: AsyncSession, event: CloudEvent, d: state.Appended) -> None:
    await state.on_appended(session, d)
    org, conversation_id = d.organization_id, d.conversation_id
    if d.direction == "inbound":
        reply = d.reply.model_dump() if d.reply is not None else None
        await flows.on_customer_message(
            session, org, conversation_id, text=d.text, reply=reply, message_id=d.message_id
        )
    elif d.sender_type in state.AGENT_SENDERS:
        await flows.on_agent_activity(session, org, conversation_id, "agent_replied")


async def on_opened(session: AsyncSession, event: CloudEvent, d: state.Opened) -> None:
    await state.on_opened(session, d)


async def on_status(session: AsyncSession, event: CloudEvent, d: state.StatusMoved) -> None:
    await state.on_status(session, d)


async def on_assigned(session: AsyncSession, event: CloudEvent, d: state.Assigned) -> None:
    await state.on_assigned(session, d)
    if d.assignee_id is not None:
        await flows.on_agent_activity(
            session, d.organization_id, d.conversation_id, "assigned_to_agent"
        )
