"""Contacts API: list/search, read, rename."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.db import Database
from pytake_common.errors import NotFound
from pytake_common.events import CloudEvent
from pytake_common.outbox import add_event
from pytake_common.security import Reader, Worker
from pytake_common.web import request_db
from pytake_contacts.domain import AGENT, MAX_NAME, clean_name
from pytake_contacts.events import ContactUpdated
from pytake_contacts.pagination import decode_cursor, encode_cursor
from pytake_contacts.tables import contacts

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])
DB = Annotated[Database, Depends(request_db)]


class Contact(BaseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    wa_id: str | None
    user_id: str | None
    name: str | None
    name_source: str
    phone: str | None
    created_at: datetime
    updated_at: datetime
    last_interaction_at: datetime | None


class ContactPage(BaseModel):
    items: list[Contact]
    next_cursor: str | None


class ContactPatch(BaseModel):
    name: str = Field(min_length=1, max_length=MAX_NAME)

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        cleaned = clean_name(value)
        if cleaned is None:
            raise ValueError("name must not be blank")
        return cleaned


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@router.get("", response_model=ContactPage)
async def list_contacts(
    principal: Reader,
    db: DB,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
) -> ContactPage:
    org = principal.organization_id
    stmt = select(contacts).where(contacts.c.organization_id == org)
    if q and q.strip():
        pattern = _like(q.strip())
        stmt = stmt.where(
            or_(
                contacts.c.name.ilike(pattern, escape="\\"),
                contacts.c.phone.ilike(pattern, escape="\\"),
                contacts.c.wa_id.ilike(pattern, escape="\\"),
            )
        )
    if cursor:
        at, last_id = decode_cursor(cursor)
        stmt = stmt.where(tuple_(contacts.c.created_at, contacts.c.id) > tuple_(at, last_id))
    stmt = stmt.order_by(contacts.c.created_at, contacts.c.id).limit(limit + 1)
    async with db.transaction(organization_id=org) as session:
        rows = (await session.execute(stmt)).mappings().all()
    items = [Contact.model_validate(dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if more else None
    return ContactPage(items=items, next_cursor=next_cursor)


async def _load(
    session: AsyncSession, org: uuid.UUID, contact_id: uuid.UUID, *, lock: bool = False
) -> Contact:
    stmt = select(contacts).where(contacts.c.id == contact_id, contacts.c.organization_id == org)
    if lock:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).mappings().first()
    if row is None:
        raise NotFound("contact not found")
    return Contact.model_validate(dict(row))


@router.get("/{contact_id}", response_model=Contact)
async def get_contact(contact_id: uuid.UUID, principal: Reader, db: DB) -> Contact:
    async with db.transaction(organization_id=principal.organization_id) as session:
        return await _load(session, principal.organization_id, contact_id)


@router.patch("/{contact_id}", response_model=Contact)
async def patch_contact(
    contact_id: uuid.UUID, body: ContactPatch, principal: Worker, db: DB
) -> Contact:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        current = await _load(session, org, contact_id, lock=True)
        values: dict[str, Any] = {"name_source": AGENT}
        changed = []
        if body.name != current.name:
            values["name"] = body.name
            changed.append("name")
        if not changed and current.name_source == AGENT:
            return current
        await session.execute(
            update(contacts)
            .where(contacts.c.id == contact_id, contacts.c.organization_id == org)
            .values(**values, updated_at=func.now())
        )
        contact = await _load(session, org, contact_id)
        if changed:
            payload = ContactUpdated(
                contact_id=contact.id,
                organization_id=org,
                name=contact.name,
                phone=contact.phone,
                changed=changed,
            )
            await add_event(
                session,
                CloudEvent.of(payload, service="contacts", subject=contact.id, tenant_id=org),
            )
        return contact
