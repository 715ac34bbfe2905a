"""The contact book: adding a contact (or restoring a deleted one), editing, deleting,
and the plan's contact limit, shared by the API and the CSV import.

Functions here run inside the caller's transaction and never commit.
"""

import uuid
from typing import Any

from sqlalchemy import func, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.errors import InvalidInput
from pytake_common.ids import contact_id_for
from pytake_common.outbox import emit
from pytake_contacts import store
from pytake_contacts.domain import (
    AGENT,
    PROFILE,
    ContactExists,
    clean_email,
    clean_language,
    clean_name,
    merge_attributes,
    normalize_phone,
    wa_id_for_phone,
)
from pytake_contacts.events import ContactCreated, ContactUpdated
from pytake_contacts.schemas import Contact, ContactCreate, ContactPatch
from pytake_contacts.tables import contacts

TEXT_FIELDS = ("company", "job_title", "notes")

#: What a contact deleted (or erased) before gets back when it is added again.
RESTORED: dict[str, Any] = {"deleted_at": None, "erased_at": None, "created_at": func.now()}


async def contact_limit(session: AsyncSession, directory: Any, org: uuid.UUID) -> int | None:
    """How many more contacts the plan allows (None: unlimited), serialising creators.

    ``directory`` is the organization directory (plan limits) ``create_service_app``
    starts (None: no limits). The advisory lock makes concurrent creators of one
    organization count in turn, so two requests cannot both take the last free place.
    """
    if directory is None:
        return None
    allowed: int | None = directory.limit(org, "contacts")
    if allowed is None:
        return None
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"contacts-limit:{org}"}
    )
    return allowed - await store.live_count(session, org)


async def check_contact_limit(session: AsyncSession, directory: Any, org: uuid.UUID) -> None:
    """Raise PlanLimitExceeded (402) when one more contact would pass the plan's limit."""
    free = await contact_limit(session, directory, org)
    if free is not None and free <= 0:
        used = await store.live_count(session, org)
        await directory.check_limit(org, "contacts", used=used)


async def view(session: AsyncSession, org: uuid.UUID, contact_id: uuid.UUID) -> Contact:
    """The live contact with its tags, or NotFound."""
    row = await store.load_contact(session, org, contact_id)
    return Contact.of(row, (await store.tags_of(session, org, [contact_id]))[contact_id])


def clean_fields(body: ContactCreate | ContactPatch) -> dict[str, Any]:
    """The profile fields sent in ``body``, normalised (``None`` clears a field)."""
    values: dict[str, Any] = {}
    sent = body.model_fields_set
    if "name" in sent:
        values["name"] = clean_name(body.name)
        if body.name is not None and values["name"] is None:
            raise InvalidInput("name must not be blank (send null to clear it)", field="name")
    if "phone" in sent:
        values["phone"] = normalize_phone(body.phone) if body.phone else None
    if "email" in sent:
        values["email"] = clean_email(body.email) if body.email else None
    if "language" in sent:
        values["language"] = clean_language(body.language) if body.language else None
    for field in TEXT_FIELDS:
        if field in sent:
            raw = getattr(body, field)
            values[field] = raw.strip() or None if raw is not None else None
    return values


async def create(
    session: AsyncSession, directory: Any, org: uuid.UUID, by: uuid.UUID, body: ContactCreate
) -> uuid.UUID:
    """Add a contact by hand, or bring a deleted one back with what was sent now.

    ``wa_id`` = the phone's E.164 digits, so WhatsApp messages land on it; a live contact
    with the same phone or user id refuses (``contact_exists``); the plan's limit applies.
    """
    values = clean_fields(body)
    phone = values.get("phone")
    wa_id = wa_id_for_phone(phone) if phone else None
    if wa_id is None and body.user_id is None:
        raise InvalidInput("a contact needs a phone number or a WhatsApp user id", field="phone")
    contact_id = contact_id_for(org, wa_id, body.user_id)
    schema = await store.attribute_schema(session, org)
    values["attributes"] = merge_attributes(schema, {}, body.attributes)
    keys = [contacts.c.id == contact_id]
    if wa_id:
        keys.append(contacts.c.wa_id == wa_id)
    if body.user_id:
        keys.append(contacts.c.user_id == body.user_id)
    existing = (
        (
            await session.execute(
                select(contacts.c.id, contacts.c.deleted_at)
                .where(contacts.c.organization_id == org, or_(*keys))
                .with_for_update()
            )
        )
        .mappings()
        .all()
    )
    for row in existing:
        if row["deleted_at"] is None:
            raise ContactExists(
                "a contact with this phone already exists", contact_id=str(row["id"])
            )
    await check_contact_limit(session, directory, org)
    values |= {
        "wa_id": wa_id,
        "user_id": body.user_id,
        "name_source": AGENT if values.get("name") else PROFILE,
    }
    if existing:  # soft-deleted before: it comes back with what was sent now
        contact_id = existing[0]["id"]
        blank = {f: None for f in ("name", "phone", "email", "language", *TEXT_FIELDS)}
        await store.set_values(session, org, contact_id, **(blank | values | RESTORED))
    else:
        await session.execute(insert(contacts).values(id=contact_id, organization_id=org, **values))
    payload = ContactCreated(
        contact_id=contact_id,
        organization_id=org,
        wa_id=wa_id,
        user_id=body.user_id,
        name=values.get("name"),
        phone=phone,
        attributes=values["attributes"],
    )
    await emit(session, payload, contact_id, org)
    now = await store.now(session)
    await store.record_interaction(
        session,
        org,
        contact_id,
        "contact.created",
        now,
        f"created:{contact_id}:{now.isoformat()}",
        {"by": str(by)},
    )
    return contact_id


async def patch(
    session: AsyncSession, org: uuid.UUID, contact_id: uuid.UUID, body: ContactPatch
) -> Contact:
    """Change the fields sent (attributes merge); ``contact.updated`` says what changed."""
    values = clean_fields(body)
    current = await store.load_contact(session, org, contact_id, lock=True)
    if body.attributes:
        schema = await store.attribute_schema(session, org)
        values["attributes"] = merge_attributes(schema, current["attributes"], body.attributes)
    changed = sorted(k for k, v in values.items() if current[k] != v)
    if "name" in values:
        values["name_source"] = AGENT
    if not changed and values.get("name_source", current["name_source"]) == current["name_source"]:
        return await view(session, org, contact_id)
    await store.set_values(session, org, contact_id, **values)
    contact = await view(session, org, contact_id)
    if changed:
        payload = ContactUpdated(
            contact_id=contact_id,
            organization_id=org,
            name=contact.name,
            phone=contact.phone,
            changed=changed,
            attributes=contact.attributes,
        )
        await emit(session, payload, contact_id, org)
    return contact


async def delete(session: AsyncSession, org: uuid.UUID, contact_id: uuid.UUID) -> None:
    """Soft delete: the contact leaves lists and lookups; a new message restores it."""
    await store.load_contact(session, org, contact_id, lock=True)
    await store.set_values(session, org, contact_id, deleted_at=func.now())
