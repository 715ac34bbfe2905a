"""Canned responses: per-organization reply snippets with placeholders
(``{{contact.name}}``, ``{{agent.name}}``...), kept and rendered for a reply.

Functions here run inside the caller's transaction and never commit.
"""

import re
import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.errors import NotFound
from pytake_common.pagination import ROW_ID, TIMESTAMP, keyset
from pytake_conversations.domain import InvalidPlaceholder, render, unknown_placeholders
from pytake_conversations.tables import canned_responses, contact_replicas, user_replicas

#: canned responses, newest first by (created_at, id)
CANNED = keyset("canned-responses", TIMESTAMP, ROW_ID)
SHORTCODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_body(body: str) -> str:
    """A body that is not blank and names only known placeholders."""
    if not body.strip():
        raise ValueError("body must not be blank")
    unknown = unknown_placeholders(body)
    if unknown:
        raise InvalidPlaceholder(
            f"unknown placeholders: {', '.join(unknown)}", placeholders=unknown
        )
    return body


def _check_shortcode(value: str) -> str:
    if not SHORTCODE.match(value):
        raise ValueError("shortcode: letters, digits, '_' and '-', at most 64")
    return value


class CannedInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shortcode: str
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=4096)

    _shortcode = field_validator("shortcode")(_check_shortcode)


class CannedPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shortcode: str | None = None
    title: str | None = Field(default=None, min_length=1, max_length=200)
    body: str | None = Field(default=None, min_length=1, max_length=4096)

    @field_validator("shortcode")
    @classmethod
    def _shortcode(cls, value: str | None) -> str | None:
        return None if value is None else _check_shortcode(value)


class CannedResponse(BaseModel):
    id: uuid.UUID
    shortcode: str
    title: str
    body: str
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


async def list_page(
    session: AsyncSession, org: uuid.UUID, q: str | None, limit: int, cursor: str | None
) -> tuple[list[CannedResponse], str | None]:
    """A page of the organization's canned responses, newest first (``q``: a shortcode
    prefix, whatever the case), and the next page's cursor."""
    stmt = select(canned_responses).where(canned_responses.c.organization_id == org)
    if q:
        escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(func.lower(canned_responses.c.shortcode).like(escaped + "%"))
    if cursor:
        stmt = stmt.where(
            tuple_(canned_responses.c.created_at, canned_responses.c.id)
            < tuple_(*CANNED.decode(cursor))
        )
    stmt = stmt.order_by(canned_responses.c.created_at.desc(), canned_responses.c.id.desc())
    rows = (await session.execute(stmt.limit(limit + 1))).mappings().all()
    items = [CannedResponse.model_validate(dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    return items, CANNED.encode((items[-1].created_at, items[-1].id)) if more else None


async def create(
    session: AsyncSession, org: uuid.UUID, by: uuid.UUID, body: CannedInput
) -> CannedResponse:
    """Store a canned response (a shortcode in use raises IntegrityError)."""
    row = (
        (
            await session.execute(
                canned_responses.insert()
                .values(id=uuid.uuid4(), organization_id=org, created_by=by, **body.model_dump())
                .returning(*canned_responses.c)
            )
        )
        .mappings()
        .one()
    )
    return CannedResponse.model_validate(dict(row))


async def load(session: AsyncSession, org: uuid.UUID, canned_id: uuid.UUID) -> CannedResponse:
    row = (
        (
            await session.execute(
                select(canned_responses).where(
                    canned_responses.c.id == canned_id,
                    canned_responses.c.organization_id == org,
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound("canned response not found")
    return CannedResponse.model_validate(dict(row))


async def patch(
    session: AsyncSession, org: uuid.UUID, canned_id: uuid.UUID, changes: dict[str, str]
) -> CannedResponse:
    """Store the fields given (a shortcode in use raises IntegrityError)."""
    row = (
        (
            await session.execute(
                update(canned_responses)
                .where(
                    canned_responses.c.id == canned_id,
                    canned_responses.c.organization_id == org,
                )
                .values(updated_at=func.now(), **changes)
                .returning(*canned_responses.c)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound("canned response not found")
    return CannedResponse.model_validate(dict(row))


async def remove(session: AsyncSession, org: uuid.UUID, canned_id: uuid.UUID) -> None:
    deleted = await session.scalar(
        delete(canned_responses)
        .where(canned_responses.c.id == canned_id, canned_responses.c.organization_id == org)
        .returning(canned_responses.c.id)
    )
    if deleted is None:
        raise NotFound("canned response not found")


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
