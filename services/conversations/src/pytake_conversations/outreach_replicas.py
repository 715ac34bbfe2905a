"""What starting a conversation needs to know, kept from other services' events.

- contacts (contacts' events): the WhatsApp ids to write to, custom attributes (template
  parameters), marketing consent and erasure — beside the name and block list
  ``replicas.py`` keeps;
- numbers (whatsapp-gateway): the organization's numbers, their Graph API id, WABA and
  whether they are connected;
- templates (whatsapp-gateway): review status, category, language and components.

Idempotent and order-tolerant like ``replicas.py``: each fact carries the time of the
newest event that set it, and an older event arriving late does not overwrite it. The
readers are :class:`~pytake_common.events.TenantEventData`: data of another organization
than the event's tenant fails validation (dead-lettered at once), times are in UTC.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import case, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common import event_types
from pytake_common.consumer import Handler
from pytake_common.events import CloudEvent, TenantEventData
from pytake_conversations.tables import contact_replicas, number_replicas, template_replicas

CONTACT_CREATED = event_types.CONTACTS_CONTACT_CREATED_V1
CONTACT_UPDATED = event_types.CONTACTS_CONTACT_UPDATED_V1
CONTACT_ERASED = event_types.CONTACTS_CONTACT_ERASED_V1
CONTACT_CONSENT_CHANGED = event_types.CONTACTS_CONTACT_CONSENT_CHANGED_V1
NUMBER_REGISTERED = event_types.WHATSAPP_NUMBER_REGISTERED_V1
NUMBER_UPDATED = event_types.WHATSAPP_NUMBER_UPDATED_V1
NUMBER_DISCONNECTED = event_types.WHATSAPP_NUMBER_DISCONNECTED_V1
NUMBER_REMOVED = event_types.WHATSAPP_NUMBER_REMOVED_V1
TEMPLATE_SYNCED = event_types.WHATSAPP_TEMPLATE_SYNCED_V1
TEMPLATE_STATUS_CHANGED = event_types.WHATSAPP_TEMPLATE_STATUS_CHANGED_V1

CONNECTED, DISCONNECTED, REMOVED = "connected", "disconnected", "removed"


def _newer(version: Any, at: datetime) -> Any:
    """SQL: an event at ``at`` is not older than what set ``version`` (NULL: never set)."""
    return version.is_(None) | (version <= at)


# --- contacts ---------------------------------------------------------------------------


class ContactProfile(TenantEventData):
    contact_id: uuid.UUID
    organization_id: uuid.UUID
    wa_id: str | None = None
    user_id: str | None = None
    #: absent from events of contacts older than this field: then nothing changes
    attributes: dict[str, Any] | None = None


class ConsentChanged(TenantEventData):
    contact_id: uuid.UUID
    organization_id: uuid.UUID
    marketing_opt_in: bool
    changed_at: datetime | None = None


class Erased(TenantEventData):
    contact_id: uuid.UUID
    organization_id: uuid.UUID
    erased_at: datetime | None = None


async def on_contact_profile(session: AsyncSession, event: CloudEvent) -> None:
    """``contact.created`` / ``contact.updated``: WhatsApp ids and custom attributes.

    A contact created again after an erasure (it wrote again, or was imported) is no
    longer erased.
    """
    data = event.parse_data(ContactProfile)
    org = data.organization_id
    row = contact_replicas.c
    insert = pg_insert(contact_replicas).values(
        id=data.contact_id,
        organization_id=org,
        wa_id=data.wa_id,
        user_id=data.user_id,
        attributes=data.attributes,
        attributes_at=event.time if data.attributes is not None else None,
        updated_at=event.time,
    )
    changes: dict[str, Any] = {
        "wa_id": func.coalesce(insert.excluded.wa_id, row.wa_id),
        "user_id": func.coalesce(insert.excluded.user_id, row.user_id),
    }
    if data.attributes is not None:
        takes = _newer(row.attributes_at, event.time)
        changes["attributes"] = case((takes, insert.excluded.attributes), else_=row.attributes)
        changes["attributes_at"] = case((takes, event.time), else_=row.attributes_at)
    if event.type == CONTACT_CREATED:
        changes["erased_at"] = case(
            (row.erased_at.is_not(None) & (row.erased_at < event.time), None),
            else_=row.erased_at,
        )
    await session.execute(insert.on_conflict_do_update(index_elements=[row.id], set_=changes))


async def on_consent_changed(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(ConsentChanged)
    org = data.organization_id
    at = data.changed_at or event.time
    insert = pg_insert(contact_replicas).values(
        id=data.contact_id,
        organization_id=org,
        marketing_opt_in=data.marketing_opt_in,
        consent_changed_at=at,
        updated_at=event.time,
    )
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=[contact_replicas.c.id],
            set_={"marketing_opt_in": data.marketing_opt_in, "consent_changed_at": at},
            where=_newer(contact_replicas.c.consent_changed_at, at),
        )
    )


async def on_contact_erased(session: AsyncSession, event: CloudEvent) -> None:
    """Forget what starting a conversation would use; nothing can be sent to it any more."""
    data = event.parse_data(Erased)
    org = data.organization_id
    at = data.erased_at or event.time
    insert = pg_insert(contact_replicas).values(
        id=data.contact_id, organization_id=org, erased_at=at, updated_at=event.time
    )
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=[contact_replicas.c.id],
            set_={
                "erased_at": at,
                "wa_id": None,
                "user_id": None,
                "attributes": None,
                "attributes_at": at,
                "marketing_opt_in": False,
                "consent_changed_at": at,
            },
        )
    )


def chained(*handlers: Handler) -> Handler:
    """One event, several independent replica updates, in the same transaction."""

    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        for handler in handlers:
            await handler(session, event)

    return handle


# --- numbers ----------------------------------------------------------------------------


class NumberFacts(TenantEventData):
    number_id: uuid.UUID
    organization_id: uuid.UUID
    phone_number_id: str | None = None
    waba_id: str | None = None
    display_phone_number: str | None = None
    status: str | None = None


async def _number(session: AsyncSession, event: CloudEvent, status: str | None) -> None:
    data = event.parse_data(NumberFacts)
    org = data.organization_id
    row = number_replicas.c
    status = status or data.status or CONNECTED
    insert = pg_insert(number_replicas).values(
        id=data.number_id,
        organization_id=org,
        phone_number_id=data.phone_number_id,
        waba_id=data.waba_id,
        display_phone_number=data.display_phone_number,
        status=status,
        version_at=event.time,
    )
    takes = row.version_at <= event.time
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=[row.id],
            set_={
                # ids never change: a late "registered" still fills them in
                "phone_number_id": func.coalesce(
                    row.phone_number_id, insert.excluded.phone_number_id
                ),
                "waba_id": func.coalesce(row.waba_id, insert.excluded.waba_id),
                "display_phone_number": case(
                    (
                        takes & insert.excluded.display_phone_number.is_not(None),
                        insert.excluded.display_phone_number,
                    ),
                    else_=row.display_phone_number,
                ),
                # removed is final (a number registered again gets a new id)
                "status": case(
                    (takes & (row.status != REMOVED), insert.excluded.status), else_=row.status
                ),
                "version_at": func.greatest(row.version_at, insert.excluded.version_at),
            },
        )
    )


async def on_number_registered(session: AsyncSession, event: CloudEvent) -> None:
    await _number(session, event, CONNECTED)


async def on_number_updated(session: AsyncSession, event: CloudEvent) -> None:
    await _number(session, event, None)


async def on_number_disconnected(session: AsyncSession, event: CloudEvent) -> None:
    await _number(session, event, DISCONNECTED)


async def on_number_removed(session: AsyncSession, event: CloudEvent) -> None:
    await _number(session, event, REMOVED)


# --- templates --------------------------------------------------------------------------


class TemplateFacts(TenantEventData):
    template_id: uuid.UUID
    organization_id: uuid.UUID
    number_id: uuid.UUID | None = None
    waba_id: str
    name: str
    language: str
    category: str | None = None
    status: str
    components: list[dict[str, Any]] = []


async def on_template(session: AsyncSession, event: CloudEvent) -> None:
    """``template.synced`` / ``template.status_changed``: the template as Meta has it."""
    data = event.parse_data(TemplateFacts)
    org = data.organization_id
    values = {
        "organization_id": org,
        "number_id": data.number_id,
        "waba_id": data.waba_id,
        "name": data.name,
        "language": data.language,
        "category": data.category.upper() if data.category else None,
        "status": data.status.upper(),
        "components": data.components,
        "version_at": event.time,
    }
    insert = pg_insert(template_replicas).values(id=data.template_id, **values)
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=[template_replicas.c.id],
            set_={k: insert.excluded[k] for k in values},
            where=template_replicas.c.version_at <= insert.excluded.version_at,
        )
    )


def outreach_handlers(existing: dict[str, Handler]) -> dict[str, Handler]:
    """The handlers of this module, each chained after ``existing``'s for the same type."""
    mine: dict[str, Handler] = {
        CONTACT_CREATED: on_contact_profile,
        CONTACT_UPDATED: on_contact_profile,
        CONTACT_CONSENT_CHANGED: on_consent_changed,
        CONTACT_ERASED: on_contact_erased,
        NUMBER_REGISTERED: on_number_registered,
        NUMBER_UPDATED: on_number_updated,
        NUMBER_DISCONNECTED: on_number_disconnected,
        NUMBER_REMOVED: on_number_removed,
        TEMPLATE_SYNCED: on_template,
        TEMPLATE_STATUS_CHANGED: on_template,
    }
    return {
        etype: chained(existing[etype], handler) if etype in existing else handler
        for etype, handler in mine.items()
    }
