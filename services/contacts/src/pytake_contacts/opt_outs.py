"""WhatsApp's 131050 ("the customer stopped marketing messages from this business"):
the contact's marketing consent is cleared, so no campaign writes to them again.

Meta says it on a send: as the gateway's ``message.failed`` (the Graph call refused) or,
more often, as a ``failed`` status webhook (``message.status_updated``). Both are read.
The contact is the one with that WhatsApp id in the organization (its ``wa_id``, or its
business-scoped ``user_id``), i.e. the contact ``pytake_common.ids.contact_id_for``
names. Idempotent: an opt-out already recorded, or consent given after Meta's refusal,
is left alone; the timeline fact is keyed by the refused message.

The statuses are most of what this consumer receives (three per campaign send) and
almost none is a 131050: a :class:`~pytake_common.consumer.SetHandler` takes a batch's
statuses of an organization at once (their inbox marks in one statement), reads only a
``failed`` one's data, and touches the database only for a 131050 among them.
"""

import uuid
from datetime import UTC, datetime

from pydantic import Field
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.consumer import Handler, SetHandler
from pytake_common.event_types import (
    WHATSAPP_MESSAGE_FAILED_V1,
    WHATSAPP_MESSAGE_STATUS_UPDATED_V1,
)
from pytake_common.events import CloudEvent, TenantEventData
from pytake_contacts.actions import change_consent
from pytake_contacts.tables import contacts

#: Meta's code: the user opted out of the business's marketing messages
MARKETING_OPT_OUT = 131050
REASON = "meta_131050"
#: where the consent change comes from (``consent_source``)
SOURCE = "whatsapp"


class MessageFailed(TenantEventData):
    organization_id: uuid.UUID
    message_id: uuid.UUID | None = None
    to: str | None = None
    error_code: int | None = None
    failed_at: datetime


class StatusError(TenantEventData):
    code: int | None = None


class StatusUpdated(TenantEventData):
    organization_id: uuid.UUID
    message_id: uuid.UUID | None = None
    wamid: str | None = None
    status: str
    recipient_id: str | None = None
    timestamp: datetime
    errors: list[StatusError] = Field(default_factory=list)


async def on_message_failed(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(MessageFailed)
    if data.error_code == MARKETING_OPT_OUT and data.to:
        message = str(data.message_id or event.subject)
        await clear_marketing_consent(
            session, data.organization_id, data.to, data.failed_at, message
        )


class OptOut(TenantEventData):
    """What a status says: a 131050 for ``whatsapp_id`` (the customer's), or nothing."""

    organization_id: uuid.UUID
    whatsapp_id: str | None
    at: datetime
    message: str


#: a status that says no opt-out (the same object for all of them: nothing is built)
NOTHING = OptOut(
    organization_id=uuid.UUID(int=0),
    whatsapp_id=None,
    at=datetime.fromtimestamp(0, UTC),
    message="",
)


def read_status(event: CloudEvent) -> OptOut:
    """The opt-out a status says, if any: only a ``failed`` one's data is parsed
    (sent/delivered/read, most of the topic, are not read at all)."""
    if not isinstance(event.data, dict) or event.data.get("status") != "failed":
        return NOTHING
    data = event.parse_data(StatusUpdated)
    opted_out = any(e.code == MARKETING_OPT_OUT for e in data.errors)
    if not (opted_out and data.recipient_id):
        return NOTHING
    return OptOut(
        organization_id=data.organization_id,
        whatsapp_id=data.recipient_id,
        at=data.timestamp,
        message=str(data.message_id or data.wamid or event.subject),
    )


async def on_statuses_updated(session: AsyncSession, rows: list[OptOut]) -> None:
    for o in rows:
        if o.whatsapp_id is not None:
            await clear_marketing_consent(
                session, o.organization_id, o.whatsapp_id, o.at, o.message
            )


async def clear_marketing_consent(
    session: AsyncSession, org: uuid.UUID, whatsapp_id: str, at: datetime, message: str
) -> bool:
    """Withdraw the contact's marketing consent as of ``at``; True when it changed."""
    c = contacts.c
    row = (
        (
            await session.execute(
                select(c.id, c.marketing_opt_in, c.consent_changed_at)
                .where(
                    c.organization_id == org,
                    or_(c.wa_id == whatsapp_id, c.user_id == whatsapp_id),
                    c.deleted_at.is_(None),
                    c.erased_at.is_(None),
                )
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )
    if row is None or not row["marketing_opt_in"]:
        return False
    if row["consent_changed_at"] is not None and row["consent_changed_at"] > at:
        return False  # consent given again after Meta's refusal: the newer fact stands
    await change_consent(
        session,
        org,
        row["id"],
        False,
        SOURCE,
        at,
        fact_key=f"{REASON}:{message}",
        fact={"marketing_opt_in": False, "source": SOURCE, "reason": REASON, "message": message},
        reason=REASON,
    )
    return True


OPT_OUT_HANDLERS: dict[str, Handler] = {
    WHATSAPP_MESSAGE_FAILED_V1: on_message_failed,
    # after the batch's contacts are upserted (inbound messages, order 0 and 1)
    WHATSAPP_MESSAGE_STATUS_UPDATED_V1: SetHandler(
        OptOut, on_statuses_updated, parse=read_status, order=2
    ),
}
