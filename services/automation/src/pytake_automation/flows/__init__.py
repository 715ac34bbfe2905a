"""Chatbot flows: a declarative graph (``definition``), its publish checks (``validation``),
a pure interpreter (``interpreter``), and their running on conversations (``sessions``).

Entry points for the rest of the service, each in the caller's transaction:
:func:`start_flow` (rules' "start a flow" action), :func:`on_customer_message` (the
active session answers it), :func:`on_agent_activity` (an agent's reply
or an assignment to an agent ends the session) and :func:`on_timer` (the timer
worker's ``flow_wait`` rows).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Literal

from pytake_automation.flows import sessions
from pytake_automation.flows.facts import facts_of, facts_with
from pytake_automation.flows.session import Facts, Inbound, Reply, SessionState
from pytake_automation.flows.sessions import TIMER_KIND, FlowNotPublished

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from pytake_automation.actions import Target
    from pytake_automation.context import ContactView, TriggerContext

__all__ = [
    "TIMER_KIND",
    "FlowNotPublished",
    "on_agent_activity",
    "on_customer_message",
    "on_timer",
    "start_flow",
]

on_timer = sessions.on_timer


async def _facts(session: AsyncSession, ctx: TriggerContext) -> Facts:
    facts = await facts_of(
        session,
        ctx.conversation.organization_id,
        ctx.contact.id,
        business_open=ctx.business_open,
    )
    return facts


async def start_flow(
    session: AsyncSession, ctx: TriggerContext, flow_id: uuid.UUID
) -> uuid.UUID | None:
    """Start flow ``flow_id`` (its newest published version) on ``ctx``'s conversation.

    Idempotent per (``ctx.trigger_key``, flow): a redelivered trigger starts nothing. The
    session id, or None when nothing started (already started by this trigger, or
    another flow is active on the conversation). :class:`FlowNotPublished` (409) when the
    flow has no published version or is not the organization's."""
    facts = await _facts(session, ctx)
    return await sessions.start(session, ctx.target, flow_id, ctx.trigger_key, facts)


async def on_customer_message(
    session: AsyncSession,
    org: uuid.UUID,
    conversation_id: uuid.UUID,
    *,
    text: str | None,
    reply: dict[str, Any] | None,
    message_id: uuid.UUID | None = None,
    business_open: bool | None = None,
    contact: ContactView | None = None,
    current: tuple[Target, SessionState] | Literal["unread"] | None = "unread",
) -> bool:
    """A customer's message: True when an active flow took it (as an answer, or as its
    stop word). Call it before rules that could start a flow, so a message that starts
    a flow is not also taken as the flow's first answer. ``contact``: the contact as the
    caller read it in this transaction (else it is read again); ``current``: the active
    session (None: there is none) as the caller read and locked it (else it is read)."""
    if current == "unread":
        current = await sessions.active(session, org, conversation_id)
    if current is None or isinstance(current, str):
        return False
    event = Inbound(text=text, reply=Reply.model_validate(reply) if reply else None)
    facts = None
    if contact is not None:
        facts = await facts_with(
            session,
            org,
            contact.name,
            contact.attributes,
            contact.tag_ids,
            business_open=business_open,
        )
    return await sessions.feed(
        session,
        org,
        conversation_id,
        event,
        facts,
        business_open=business_open,
        message_id=message_id,
        current=current,
    )


async def on_agent_activity(
    session: AsyncSession, org: uuid.UUID, conversation_id: uuid.UUID, reason: str
) -> bool:
    """An agent replied or took the conversation: its active flow (if any) ends."""
    return await sessions.stop(session, org, conversation_id, reason)
