"""What campaigns knows of contacts, tags, numbers and templates: kept from their events.

Idempotent and order-tolerant: each fact remembers the time of the newest event that set
it (``*_at``), and an older event arriving late does not overwrite it. Readers are
:class:`~pytake_common.events.TenantEventData` (another organization's data in an event
fails validation: dead-lettered). What is read of each event is exactly the fields below.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, delete, func, literal
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_campaigns.tables import (
    contact_replicas,
    contact_tags,
    number_replicas,
    tag_replicas,
    template_replicas,
)
from pytake_common import event_types as et
from pytake_common.consumer import Handler
from pytake_common.events import CloudEvent, TenantEventData


def _newer(version: Any, at: datetime) -> ColumnElement[bool]:
    """SQL: an event at ``at`` is not older than what set ``version`` (NULL: never set)."""
    result: ColumnElement[bool] = version.is_(None) | (version <= at)
    return result


async def _upsert_contact(
    session: AsyncSession, org: uuid.UUID, contact_id: uuid.UUID, set_: dict[str, Any], **new: Any
) -> None:
    insert = pg_insert(contact_replicas).values(id=contact_id, organization_id=org, **new)
    await session.execute(
        insert.on_conflict_do_update(index_elements=[contact_replicas.c.id], set_=set_)
    )


async def _set_fact(
    session: AsyncSession,
    org: uuid.UUID,
    contact_id: uuid.UUID,
    version: str,
    at: datetime,
    **values: Any,
) -> None:
    """Set ``values`` unless a newer event already set them (its time in ``version``)."""
    c = contact_replicas.c
    takes = _newer(c[version], at)
    set_ = {name: case((takes, value), else_=c[name]) for name, value in values.items()}
    set_[version] = case((takes, at), else_=c[version])
    await _upsert_contact(session, org, contact_id, set_, **values, **{version: at})


# --- contacts ---------------------------------------------------------------------------


class ContactProfile(TenantEventData):
    contact_id: uuid.UUID
    organization_id: uuid.UUID
    wa_id: str | None = None
    user_id: str | None = None
    name: str | None = None
    phone: str | None = None
    attributes: dict[str, Any] | None = None


async def on_contact_profile(session: AsyncSession, event: CloudEvent) -> None:
    """``contact.created`` / ``contact.updated``: ids, name, phone, custom attributes.

    A contact created again after an erasure (it wrote again, or was imported) is no
    longer erased.
    """
    d = event.parse_data(ContactProfile)
    c, at = contact_replicas.c, event.time
    created = event.type == et.CONTACTS_CONTACT_CREATED_V1
    takes = _newer(c.profile_at, at)
    changes: dict[str, Any] = {
        "wa_id": func.coalesce(d.wa_id, c.wa_id),
        "user_id": func.coalesce(d.user_id, c.user_id),
        "name": case((takes, d.name), else_=c.name),
        "phone": case((takes, d.phone), else_=c.phone),
        "profile_at": case((takes, at), else_=c.profile_at),
    }
    if d.attributes is not None:
        changes["attributes"] = case((takes, literal(d.attributes, JSONB)), else_=c.attributes)
    if created:
        changes["created_at"] = func.coalesce(c.created_at, at)
        changes["erased_at"] = case(
            (c.erased_at.is_not(None) & (c.erased_at < at), None), else_=c.erased_at
        )
    await _upsert_contact(
        session,
        d.organization_id,
        d.contact_id,
        changes,
        wa_id=d.wa_id,
        user_id=d.user_id,
        name=d.name,
        phone=d.phone,
        attributes=d.attributes,
        profile_at=at,
        created_at=at if created else None,
    )


class Blocking(TenantEventData):
    contact_id: uuid.UUID
    organization_id: uuid.UUID
    blocked_at: datetime | None = None
    unblocked_at: datetime | None = None


async def on_blocking(session: AsyncSession, event: CloudEvent) -> None:
    d = event.parse_data(Blocking)
    blocked = event.type == et.CONTACTS_CONTACT_BLOCKED_V1
    at = (d.blocked_at if blocked else d.unblocked_at) or event.time
    await _set_fact(session, d.organization_id, d.contact_id, "blocked_at", at, blocked=blocked)


class Consent(TenantEventData):
    contact_id: uuid.UUID
    organization_id: uuid.UUID
    marketing_opt_in: bool
    changed_at: datetime | None = None


async def on_consent(session: AsyncSession, event: CloudEvent) -> None:
    d = event.parse_data(Consent)
    at = d.changed_at or event.time
    await _set_fact(
        session,
        d.organization_id,
        d.contact_id,
        "consent_at",
        at,
        marketing_opt_in=d.marketing_opt_in,
    )


class Assignment(TenantEventData):
    contact_id: uuid.UUID
    organization_id: uuid.UUID
    assignee_id: uuid.UUID | None = None


async def on_assigned(session: AsyncSession, event: CloudEvent) -> None:
    d = event.parse_data(Assignment)
    await _set_fact(
        session,
        d.organization_id,
        d.contact_id,
        "assigned_at",
        event.time,
        assignee_id=d.assignee_id,
    )


class Erasure(TenantEventData):
    contact_id: uuid.UUID
    organization_id: uuid.UUID
    erased_at: datetime | None = None


async def on_erased(session: AsyncSession, event: CloudEvent) -> None:
    """Forget the contact's data; it is never sent to again (until it is created anew)."""
    d = event.parse_data(Erasure)
    at = d.erased_at or event.time
    forgotten = {
        "wa_id": None,
        "user_id": None,
        "name": None,
        "phone": None,
        "attributes": None,
        "marketing_opt_in": False,
    }
    await _upsert_contact(
        session,
        d.organization_id,
        d.contact_id,
        {"erased_at": at, "profile_at": at, "consent_at": at, **forgotten},
        erased_at=at,
        profile_at=at,
        consent_at=at,
    )
    await session.execute(
        delete(contact_tags).where(
            contact_tags.c.organization_id == d.organization_id,
            contact_tags.c.contact_id == d.contact_id,
        )
    )


class Tagging(TenantEventData):
    contact_id: uuid.UUID
    organization_id: uuid.UUID
    tag_id: uuid.UUID


async def on_tagged(session: AsyncSession, event: CloudEvent) -> None:
    # Tagged/untagged of one contact share its record key: they arrive in order.
    d = event.parse_data(Tagging)
    await session.execute(
        pg_insert(contact_tags)
        .values(organization_id=d.organization_id, contact_id=d.contact_id, tag_id=d.tag_id)
        .on_conflict_do_nothing()
    )


async def on_untagged(session: AsyncSession, event: CloudEvent) -> None:
    d = event.parse_data(Tagging)
    t = contact_tags.c
    await session.execute(
        delete(contact_tags).where(
            t.organization_id == d.organization_id,
            t.contact_id == d.contact_id,
            t.tag_id == d.tag_id,
        )
    )


class TagFacts(TenantEventData):
    tag_id: uuid.UUID
    organization_id: uuid.UUID
    name: str | None = None


async def on_tag(session: AsyncSession, event: CloudEvent) -> None:
    d = event.parse_data(TagFacts)
    insert = pg_insert(tag_replicas).values(
        id=d.tag_id, organization_id=d.organization_id, name=d.name
    )
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=[tag_replicas.c.id],
            set_={"name": insert.excluded.name},
            where=tag_replicas.c.deleted_at.is_(None),
        )
    )


async def on_tag_deleted(session: AsyncSession, event: CloudEvent) -> None:
    d = event.parse_data(TagFacts)
    insert = pg_insert(tag_replicas).values(
        id=d.tag_id, organization_id=d.organization_id, deleted_at=event.time
    )
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=[tag_replicas.c.id], set_={"deleted_at": event.time}
        )
    )
    await session.execute(
        delete(contact_tags).where(
            contact_tags.c.organization_id == d.organization_id,
            contact_tags.c.tag_id == d.tag_id,
        )
    )


# --- numbers ----------------------------------------------------------------------------


class NumberFacts(TenantEventData):
    number_id: uuid.UUID
    organization_id: uuid.UUID
    waba_id: str | None = None
    display_phone_number: str | None = None
    status: str | None = None
    #: Meta's ``TIER_250 | TIER_2K | ...`` (absent from older events: the lowest tier)
    messaging_limit_tier: str | None = None
    throughput_per_second: int | None = None


def number_handler(status: str | None) -> Handler:
    """registered/updated (status from the event), disconnected, removed (fixed status)."""

    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        d = event.parse_data(NumberFacts)
        n, at = number_replicas.c, event.time
        new_status = status or d.status or "connected"
        insert = pg_insert(number_replicas).values(
            id=d.number_id,
            organization_id=d.organization_id,
            waba_id=d.waba_id,
            display_phone_number=d.display_phone_number,
            status=new_status,
            messaging_limit_tier=d.messaging_limit_tier,
            throughput_per_second=d.throughput_per_second,
            version_at=at,
        )
        takes = _newer(n.version_at, at)
        x = insert.excluded
        await session.execute(
            insert.on_conflict_do_update(
                index_elements=[n.id],
                set_={
                    "waba_id": func.coalesce(n.waba_id, x.waba_id),
                    "display_phone_number": func.coalesce(
                        x.display_phone_number, n.display_phone_number
                    ),
                    "status": case((takes, x.status), else_=n.status),
                    "messaging_limit_tier": case(
                        (takes & x.messaging_limit_tier.is_not(None), x.messaging_limit_tier),
                        else_=n.messaging_limit_tier,
                    ),
                    "throughput_per_second": case(
                        (takes & x.throughput_per_second.is_not(None), x.throughput_per_second),
                        else_=n.throughput_per_second,
                    ),
                    "version_at": case((takes, at), else_=n.version_at),
                },
            )
        )

    return handle


# --- templates --------------------------------------------------------------------------


class TemplateFacts(TenantEventData):
    template_id: uuid.UUID
    organization_id: uuid.UUID
    number_id: uuid.UUID | None = None
    waba_id: str | None = None
    name: str
    language: str
    category: str | None = None
    status: str
    components: list[dict[str, Any]] = []


async def on_template(session: AsyncSession, event: CloudEvent) -> None:
    d = event.parse_data(TemplateFacts)
    t, at = template_replicas.c, event.time
    insert = pg_insert(template_replicas).values(
        id=d.template_id,
        organization_id=d.organization_id,
        waba_id=d.waba_id,
        number_id=d.number_id,
        name=d.name,
        language=d.language,
        category=d.category,
        status=d.status,
        components=d.components,
        version_at=at,
    )
    x = insert.excluded
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=[t.id],
            set_={
                "category": func.coalesce(x.category, t.category),
                "status": x.status,
                "components": x.components,
                "version_at": x.version_at,
            },
            where=_newer(t.version_at, at),
        )
    )


REPLICA_HANDLERS: dict[str, Handler] = {
    et.CONTACTS_CONTACT_CREATED_V1: on_contact_profile,
    et.CONTACTS_CONTACT_UPDATED_V1: on_contact_profile,
    et.CONTACTS_CONTACT_BLOCKED_V1: on_blocking,
    et.CONTACTS_CONTACT_UNBLOCKED_V1: on_blocking,
    et.CONTACTS_CONTACT_CONSENT_CHANGED_V1: on_consent,
    et.CONTACTS_CONTACT_ASSIGNED_V1: on_assigned,
    et.CONTACTS_CONTACT_ERASED_V1: on_erased,
    et.CONTACTS_CONTACT_TAGGED_V1: on_tagged,
    et.CONTACTS_CONTACT_UNTAGGED_V1: on_untagged,
    et.CONTACTS_TAG_CREATED_V1: on_tag,
    et.CONTACTS_TAG_UPDATED_V1: on_tag,
    et.CONTACTS_TAG_DELETED_V1: on_tag_deleted,
    et.WHATSAPP_NUMBER_REGISTERED_V1: number_handler(None),
    et.WHATSAPP_NUMBER_UPDATED_V1: number_handler(None),
    et.WHATSAPP_NUMBER_DISCONNECTED_V1: number_handler("disconnected"),
    et.WHATSAPP_NUMBER_REMOVED_V1: number_handler("removed"),
    et.WHATSAPP_TEMPLATE_SYNCED_V1: on_template,
    et.WHATSAPP_TEMPLATE_STATUS_CHANGED_V1: on_template,
}
