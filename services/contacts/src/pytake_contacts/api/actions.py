"""What agents do to a contact: block, consent, assign, tag, read its timeline, erase it."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.outbox import emit
from pytake_common.pagination import ROW_ID, TIMESTAMP, keyset
from pytake_common.security import WORKERS, Admin, Principal, Reader, Worker
from pytake_contacts.api.contacts import contact_out
from pytake_contacts.api.deps import DB
from pytake_contacts.api.schemas import (
    AssignBody,
    BlockBody,
    ConsentBody,
    Contact,
    Interaction,
    Timeline,
)
from pytake_contacts.domain import InvalidAssignee, erased_identifier
from pytake_contacts.events import (
    ContactAssigned,
    ContactBlocked,
    ContactConsentChanged,
    ContactErased,
    ContactTagged,
    ContactUnblocked,
    ContactUntagged,
)
from pytake_contacts.store import load_contact, load_tag, record_interaction
from pytake_contacts.tables import contact_interactions, contact_tags, contacts, users

#: a contact's timeline, newest first by (occurred_at, id)
TIMELINE = keyset("interactions", TIMESTAMP, ROW_ID)

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])


async def _now(session: AsyncSession) -> datetime:
    now: datetime | None = await session.scalar(select(func.now()))
    assert now is not None
    return now


async def _set(session: AsyncSession, org: uuid.UUID, contact_id: uuid.UUID, **values: Any) -> None:
    await session.execute(
        update(contacts)
        .where(contacts.c.id == contact_id, contacts.c.organization_id == org)
        .values(**values, updated_at=func.now())
    )


async def _fact(
    session: AsyncSession, p: Principal, contact_id: uuid.UUID, kind: str, at: datetime, **data: Any
) -> None:
    data = {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in data.items()}
    key = f"{kind}:{contact_id}:{at.isoformat()}"
    await record_interaction(
        session, p.organization_id, contact_id, kind, at, key, data | {"by": str(p.user_id)}
    )


@router.post("/{contact_id}/block", response_model=Contact)
async def block(contact_id: uuid.UUID, body: BlockBody, principal: Worker, db: DB) -> Contact:
    """Block the contact: nothing is sent to them; what they send is still recorded."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        row = await load_contact(session, org, contact_id, lock=True)
        if row["blocked_at"] is None:
            now = await _now(session)
            await _set(
                session,
                org,
                contact_id,
                blocked_at=now,
                blocked_reason=body.reason,
                blocked_by=principal.user_id,
            )
            payload = ContactBlocked(
                contact_id=contact_id,
                organization_id=org,
                reason=body.reason,
                blocked_at=now,
                blocked_by=principal.user_id,
            )
            await emit(session, payload, contact_id, org)
            await _fact(session, principal, contact_id, "contact.blocked", now, reason=body.reason)
        return await contact_out(session, org, contact_id)


@router.post("/{contact_id}/unblock", response_model=Contact)
async def unblock(contact_id: uuid.UUID, principal: Worker, db: DB) -> Contact:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        row = await load_contact(session, org, contact_id, lock=True)
        if row["blocked_at"] is not None:
            now = await _now(session)
            await _set(
                session, org, contact_id, blocked_at=None, blocked_reason=None, blocked_by=None
            )
            payload = ContactUnblocked(
                contact_id=contact_id,
                organization_id=org,
                unblocked_at=now,
                unblocked_by=principal.user_id,
            )
            await emit(session, payload, contact_id, org)
            await _fact(session, principal, contact_id, "contact.unblocked", now)
        return await contact_out(session, org, contact_id)


@router.post("/{contact_id}/consent", response_model=Contact)
async def consent(contact_id: uuid.UUID, body: ConsentBody, principal: Worker, db: DB) -> Contact:
    """Record marketing consent (opt-in or opt-out) with where it was given."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        row = await load_contact(session, org, contact_id, lock=True)
        same = (row["marketing_opt_in"], row["consent_source"]) == (
            body.marketing_opt_in,
            body.source,
        )
        if not same:
            now = await _now(session)
            await _set(
                session,
                org,
                contact_id,
                marketing_opt_in=body.marketing_opt_in,
                consent_source=body.source,
                consent_changed_at=now,
            )
            payload = ContactConsentChanged(
                contact_id=contact_id,
                organization_id=org,
                marketing_opt_in=body.marketing_opt_in,
                source=body.source,
                changed_at=now,
            )
            await emit(session, payload, contact_id, org)
            await _fact(
                session,
                principal,
                contact_id,
                "contact.consent_changed",
                now,
                marketing_opt_in=body.marketing_opt_in,
                source=body.source,
            )
        return await contact_out(session, org, contact_id)


async def _check_assignee(session: AsyncSession, org: uuid.UUID, user_id: uuid.UUID) -> None:
    row = (
        (
            await session.execute(
                select(users.c.role, users.c.is_active, users.c.deleted_at).where(
                    users.c.id == user_id, users.c.organization_id == org
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise InvalidAssignee("no such user in this organization", assignee_id=str(user_id))
    if not row["is_active"] or row["deleted_at"] is not None:
        raise InvalidAssignee("the user is deactivated", assignee_id=str(user_id))
    if row["role"] not in WORKERS:
        raise InvalidAssignee("a viewer cannot own contacts", assignee_id=str(user_id))


@router.post("/{contact_id}/assign", response_model=Contact)
async def assign(contact_id: uuid.UUID, body: AssignBody, principal: Worker, db: DB) -> Contact:
    """Give the contact an owner (an active agent of the organization), or none with null."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        row = await load_contact(session, org, contact_id, lock=True)
        if row["assignee_id"] != body.assignee_id:
            if body.assignee_id is not None:
                await _check_assignee(session, org, body.assignee_id)
            now = await _now(session)
            await _set(session, org, contact_id, assignee_id=body.assignee_id)
            payload = ContactAssigned(
                contact_id=contact_id, organization_id=org, assignee_id=body.assignee_id
            )
            await emit(session, payload, contact_id, org)
            await _fact(
                session,
                principal,
                contact_id,
                "contact.assigned",
                now,
                assignee_id=body.assignee_id,
            )
        return await contact_out(session, org, contact_id)


@router.put("/{contact_id}/tags/{tag_id}", status_code=204)
async def add_tag(contact_id: uuid.UUID, tag_id: uuid.UUID, principal: Worker, db: DB) -> Response:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await load_contact(session, org, contact_id, lock=True)
        await load_tag(session, org, tag_id)
        added = await session.execute(
            pg_insert(contact_tags)
            .values(organization_id=org, contact_id=contact_id, tag_id=tag_id)
            .on_conflict_do_nothing()
            .returning(contact_tags.c.tag_id)
        )
        if added.first() is not None:
            now = await _now(session)
            payload = ContactTagged(contact_id=contact_id, organization_id=org, tag_id=tag_id)
            await emit(session, payload, contact_id, org)
            await _fact(session, principal, contact_id, "contact.tagged", now, tag_id=tag_id)
    return Response(status_code=204)


@router.delete("/{contact_id}/tags/{tag_id}", status_code=204)
async def remove_tag(
    contact_id: uuid.UUID, tag_id: uuid.UUID, principal: Worker, db: DB
) -> Response:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await load_contact(session, org, contact_id, lock=True)
        await load_tag(session, org, tag_id)
        removed = await session.execute(
            delete(contact_tags)
            .where(
                contact_tags.c.organization_id == org,
                contact_tags.c.contact_id == contact_id,
                contact_tags.c.tag_id == tag_id,
            )
            .returning(contact_tags.c.tag_id)
        )
        if removed.first() is not None:
            now = await _now(session)
            payload = ContactUntagged(contact_id=contact_id, organization_id=org, tag_id=tag_id)
            await emit(session, payload, contact_id, org)
            await _fact(session, principal, contact_id, "contact.untagged", now, tag_id=tag_id)
    return Response(status_code=204)


@router.get("/{contact_id}/timeline", response_model=Timeline)
async def timeline(
    contact_id: uuid.UUID,
    principal: Reader,
    db: DB,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Timeline:
    """The contact's interactions, newest first."""
    org = principal.organization_id
    t = contact_interactions
    stmt = select(t.c.id, t.c.kind, t.c.occurred_at, t.c.data).where(
        t.c.organization_id == org, t.c.contact_id == contact_id
    )
    if cursor:
        at, last_id = TIMELINE.decode(cursor)
        stmt = stmt.where(tuple_(t.c.occurred_at, t.c.id) < tuple_(at, last_id))
    stmt = stmt.order_by(t.c.occurred_at.desc(), t.c.id.desc()).limit(limit + 1)
    async with db.transaction(organization_id=org) as session:
        await load_contact(session, org, contact_id)
        rows = (await session.execute(stmt)).mappings().all()
    items = [Interaction.model_validate(dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    return Timeline(
        items=items,
        next_cursor=TIMELINE.encode((items[-1].occurred_at, items[-1].id)) if more else None,
    )


@router.post("/{contact_id}/erase", status_code=204)
async def erase(contact_id: uuid.UUID, principal: Admin, db: DB) -> Response:
    """Privacy erasure: personal data removed here, identifiers hashed, every service told."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        row = await load_contact(session, org, contact_id, lock=True)
        now = await _now(session)
        await _set(
            session,
            org,
            contact_id,
            name=None,
            phone=None,
            email=None,
            company=None,
            job_title=None,
            notes=None,
            language=None,
            attributes={},
            blocked_reason=None,
            wa_id=erased_identifier(org, row["wa_id"]) if row["wa_id"] else None,
            user_id=erased_identifier(org, row["user_id"]) if row["user_id"] else None,
            deleted_at=now,
            erased_at=now,
        )
        await session.execute(
            delete(contact_tags).where(
                contact_tags.c.organization_id == org, contact_tags.c.contact_id == contact_id
            )
        )
        await session.execute(
            update(contact_interactions)
            .where(
                contact_interactions.c.organization_id == org,
                contact_interactions.c.contact_id == contact_id,
            )
            .values(data={})
        )
        payload = ContactErased(contact_id=contact_id, organization_id=org, erased_at=now)
        await emit(session, payload, contact_id, org)
    return Response(status_code=204)
