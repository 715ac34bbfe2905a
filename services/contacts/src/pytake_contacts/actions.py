"""What is done to a contact: block, consent, assign, tag, its timeline, erasure.

The API's routes and the consumers apply the same rules from here: marketing consent
(an agent's change, or Meta's opt-out in :mod:`pytake_contacts.opt_outs`) and tagging
(an agent's, or automation's in :mod:`pytake_contacts.automation_actions`). Functions
run inside the caller's transaction and never commit; the ones named after an agent's
action lock the contact and add the fact to its timeline with who did it (``by``).
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.outbox import emit
from pytake_common.pagination import ROW_ID, TIMESTAMP, keyset
from pytake_common.security import WORKERS
from pytake_contacts import store
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
from pytake_contacts.schemas import Interaction, Timeline
from pytake_contacts.tables import contact_interactions, contact_tags, users

#: a contact's timeline, newest first by (occurred_at, id)
TIMELINE = keyset("interactions", TIMESTAMP, ROW_ID)

CONSENT_CHANGED = "contact.consent_changed"


async def _fact(
    session: AsyncSession,
    org: uuid.UUID,
    by: uuid.UUID,
    contact_id: uuid.UUID,
    kind: str,
    at: datetime,
    **data: Any,
) -> None:
    """An agent's action on the contact's timeline (one fact per action and time)."""
    data = {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in data.items()}
    key = f"{kind}:{contact_id}:{at.isoformat()}"
    await store.record_interaction(session, org, contact_id, kind, at, key, data | {"by": str(by)})


async def block(
    session: AsyncSession, org: uuid.UUID, contact_id: uuid.UUID, reason: str | None, by: uuid.UUID
) -> None:
    """Block the contact (nothing is sent to them); a blocked contact stays as it was."""
    row = await store.load_contact(session, org, contact_id, lock=True)
    if row["blocked_at"] is not None:
        return
    now = await store.now(session)
    await store.set_values(
        session, org, contact_id, blocked_at=now, blocked_reason=reason, blocked_by=by
    )
    payload = ContactBlocked(
        contact_id=contact_id,
        organization_id=org,
        reason=reason,
        blocked_at=now,
        blocked_by=by,
    )
    await emit(session, payload, contact_id, org)
    await _fact(session, org, by, contact_id, "contact.blocked", now, reason=reason)


async def unblock(
    session: AsyncSession, org: uuid.UUID, contact_id: uuid.UUID, by: uuid.UUID
) -> None:
    row = await store.load_contact(session, org, contact_id, lock=True)
    if row["blocked_at"] is None:
        return
    now = await store.now(session)
    await store.set_values(
        session, org, contact_id, blocked_at=None, blocked_reason=None, blocked_by=None
    )
    payload = ContactUnblocked(
        contact_id=contact_id, organization_id=org, unblocked_at=now, unblocked_by=by
    )
    await emit(session, payload, contact_id, org)
    await _fact(session, org, by, contact_id, "contact.unblocked", now)


async def change_consent(
    session: AsyncSession,
    org: uuid.UUID,
    contact_id: uuid.UUID,
    opted_in: bool,
    source: str,
    at: datetime,
    *,
    fact_key: str,
    fact: dict[str, Any],
    reason: str | None = None,
) -> None:
    """Store a marketing consent change on a (locked) contact, publish it
    (``contact.consent_changed``) and add it to the timeline once (``fact_key``)."""
    await store.set_values(
        session,
        org,
        contact_id,
        marketing_opt_in=opted_in,
        consent_source=source,
        consent_changed_at=at,
    )
    payload = ContactConsentChanged(
        contact_id=contact_id,
        organization_id=org,
        marketing_opt_in=opted_in,
        source=source,
        changed_at=at,
        reason=reason,
    )
    await emit(session, payload, contact_id, org)
    await store.record_interaction(session, org, contact_id, CONSENT_CHANGED, at, fact_key, fact)


async def consent(
    session: AsyncSession,
    org: uuid.UUID,
    contact_id: uuid.UUID,
    opted_in: bool,
    source: str,
    by: uuid.UUID,
) -> None:
    """An agent records marketing consent (opt-in or opt-out) with where it was given."""
    row = await store.load_contact(session, org, contact_id, lock=True)
    if (row["marketing_opt_in"], row["consent_source"]) == (opted_in, source):
        return
    now = await store.now(session)
    fact = {"marketing_opt_in": opted_in, "source": source, "by": str(by)}
    key = f"{CONSENT_CHANGED}:{contact_id}:{now.isoformat()}"
    await change_consent(session, org, contact_id, opted_in, source, now, fact_key=key, fact=fact)


async def check_assignee(session: AsyncSession, org: uuid.UUID, user_id: uuid.UUID) -> None:
    """Only an active agent (or admin) of the organization owns contacts."""
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


async def assign(
    session: AsyncSession,
    org: uuid.UUID,
    contact_id: uuid.UUID,
    assignee_id: uuid.UUID | None,
    by: uuid.UUID,
) -> None:
    """Give the contact an owner, or none with ``None``."""
    row = await store.load_contact(session, org, contact_id, lock=True)
    if row["assignee_id"] == assignee_id:
        return
    if assignee_id is not None:
        await check_assignee(session, org, assignee_id)
    now = await store.now(session)
    await store.set_values(session, org, contact_id, assignee_id=assignee_id)
    payload = ContactAssigned(contact_id=contact_id, organization_id=org, assignee_id=assignee_id)
    await emit(session, payload, contact_id, org)
    await _fact(session, org, by, contact_id, "contact.assigned", now, assignee_id=assignee_id)


async def retag(
    session: AsyncSession, org: uuid.UUID, contact_id: uuid.UUID, tag_id: uuid.UUID, *, add: bool
) -> bool:
    """Tag (``add``) or untag the contact and publish it (``contact.tagged`` /
    ``contact.untagged``) if that changed anything; True when it did."""
    ct = contact_tags.c
    statement = (
        pg_insert(contact_tags)
        .values(organization_id=org, contact_id=contact_id, tag_id=tag_id)
        .on_conflict_do_nothing()
        if add
        else delete(contact_tags).where(
            ct.organization_id == org, ct.contact_id == contact_id, ct.tag_id == tag_id
        )
    )
    if await session.scalar(statement.returning(ct.tag_id)) is None:
        return False
    event = ContactTagged if add else ContactUntagged
    await emit(
        session, event(contact_id=contact_id, organization_id=org, tag_id=tag_id), contact_id, org
    )
    return True


async def tag(
    session: AsyncSession,
    org: uuid.UUID,
    contact_id: uuid.UUID,
    tag_id: uuid.UUID,
    by: uuid.UUID,
    *,
    add: bool,
) -> None:
    """An agent tags (``add``) or untags the contact; the timeline says so if it changed."""
    await store.load_contact(session, org, contact_id, lock=True)
    await store.load_tag(session, org, tag_id)
    if await retag(session, org, contact_id, tag_id, add=add):
        now = await store.now(session)
        kind = "contact.tagged" if add else "contact.untagged"
        await _fact(session, org, by, contact_id, kind, now, tag_id=tag_id)


async def timeline(
    session: AsyncSession, org: uuid.UUID, contact_id: uuid.UUID, limit: int, cursor: str | None
) -> Timeline:
    """The contact's interactions, newest first."""
    t = contact_interactions
    stmt = select(t.c.id, t.c.kind, t.c.occurred_at, t.c.data).where(
        t.c.organization_id == org, t.c.contact_id == contact_id
    )
    if cursor:
        at, last_id = TIMELINE.decode(cursor)
        stmt = stmt.where(tuple_(t.c.occurred_at, t.c.id) < tuple_(at, last_id))
    stmt = stmt.order_by(t.c.occurred_at.desc(), t.c.id.desc()).limit(limit + 1)
    await store.load_contact(session, org, contact_id)
    rows = (await session.execute(stmt)).mappings().all()
    items = [Interaction.model_validate(dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    return Timeline(
        items=items,
        next_cursor=TIMELINE.encode((items[-1].occurred_at, items[-1].id)) if more else None,
    )


async def erase(session: AsyncSession, org: uuid.UUID, contact_id: uuid.UUID) -> None:
    """Privacy erasure: personal data removed here, identifiers hashed, every service told."""
    row = await store.load_contact(session, org, contact_id, lock=True)
    now = await store.now(session)
    await store.set_values(
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
