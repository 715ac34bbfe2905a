"""Canned responses rendered for a reply: ``{{contact.name}}``, ``{{agent.name}}``..."""

import uuid

from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.errors import NotFound
from pytake_conversations.domain import render
from pytake_conversations.tables import canned_responses, contact_replicas, user_replicas


async def render_canned(
    session: AsyncSession,
    org: uuid.UUID,
    canned_id: uuid.UUID,
    conv: RowMapping,
    agent_id: uuid.UUID,
) -> str:
    body = await session.scalar(
        select(canned_responses.c.body).where(
            canned_responses.c.id == canned_id, canned_responses.c.organization_id == org
        )
    )
    if body is None:
        raise NotFound("canned response not found")
    contact = (
        await session.execute(
            select(contact_replicas.c.name, contact_replicas.c.phone).where(
                contact_replicas.c.id == conv["contact_id"],
                contact_replicas.c.organization_id == org,
            )
        )
    ).first()
    agent_name = await session.scalar(
        select(user_replicas.c.full_name).where(
            user_replicas.c.id == agent_id, user_replicas.c.organization_id == org
        )
    )
    phone = (contact.phone if contact else None) or ("+" + conv["wa_id"] if conv["wa_id"] else None)
    return render(
        body,
        {
            "contact.name": contact.name if contact else None,
            "contact.phone": phone,
            "agent.name": agent_name,
            "agent.first_name": agent_name.split()[0] if agent_name else None,
            "conversation.id": str(conv["id"]),
        },
    )
