"""WhatsApp's 131050 ("the customer stopped marketing messages from this business"):
the contact's marketing consent is cleared, so no campaign writes to them again.

Meta says it on a send: as the gateway's ``message.failed`` (the Graph call refused) or,
more often, as a ``failed`` status webhook (``message.status_updated``). Both are read.
The contact is the one with that WhatsApp id in the organization (its ``wa_id``, or its
business-scoped ``user_id``), i.e. the contact ``pytake_common.ids.contact_id_for``
names. Idempotent: an opt-out already recorded, or consent given after Meta's refusal,
is left alone; the timeline fact is keyed by the refused message.
"""

import uuid
from datetime import datetime

from pydantic import Field
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.consumer import Handler
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


async def on_status_updated(session: AsyncSession, event: CloudEvent) -> None:
    if not isinstance(event.data, dict) or event.data.get("status") != "failed":
        return  # sent/delivered/read: most of the topic, nothing to read
    data = event.parse_data(StatusUpdated)
    opted_out = any(e.code == MARKETING_OPT_OUT for e in data.errors)
    if data.status == "failed" and opted_out and data.recipient_id:
        message = str(data.message_id or data.wamid or event.subject)
        await clear_marketing_consent(
            session, data.organization_id, data.recipient_id, data.timestamp, message
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
    WHATSAPP_MESSAGE_STATUS_UPDATED_V1: on_status_updated,
}
