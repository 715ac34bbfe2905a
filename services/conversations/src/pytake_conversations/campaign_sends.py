"""Consumer of campaigns' ``recipient.dispatched``: each recipient's message, or its refusal.

The rules are exactly those of ``POST /v1/conversations`` (``starting.start``): the
contact's open conversation on the number is reused or a new one opened, the template's
parameters are filled from the contact replica, blocked/erased contacts, missing consent
and unapproved templates are refused. The message is stored ``pending`` with
``sender_type`` ``campaign`` and asked of whatsapp-gateway at ``campaign`` priority.

A recipient gets at most ONE message ever: the recipient id is claimed
(``campaign_recipients``) before anything else, so the same recipient dispatched again
under another event id (campaigns restarted between its commit and its relay) is
recognised and skipped; ``messages.recipient_id`` is unique besides. A refusal is
recorded on the claim and published as ``message.refused`` (nothing is written else).
"""

import uuid
from typing import Any

from pydantic import Field
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.consumer import Handler
from pytake_common.errors import DomainError, OrganizationSuspended
from pytake_common.event_types import CAMPAIGNS_RECIPIENT_DISPATCHED_V1
from pytake_common.events import CloudEvent, TenantEventData
from pytake_common.outbox import emit
from pytake_conversations import outreach
from pytake_conversations.domain import DEFAULT_WINDOW_HOURS
from pytake_conversations.events import MessageRefused
from pytake_conversations.senders import Sender
from pytake_conversations.starting import TemplateRequest, start
from pytake_conversations.tables import campaign_recipients

#: Refusals whose own code says less than the recipient needs.
REFUSAL_CODES: dict[type[DomainError], str] = {
    outreach.NumberNotFound: "number_unavailable",
    outreach.ContactNotFound: "contact_not_found",
}


# --- what conversations reads of campaigns' event (a tolerant reader) -------------------


class DispatchedTemplate(TenantEventData):
    name: str
    language: str
    category: str | None = None


class DispatchedParameter(TenantEventData):
    value: str
    default: str | None = None


Parameter = str | DispatchedParameter


class ParameterSpec(TenantEventData):
    """The template part of ``POST /v1/conversations``'s body, placeholders unfilled."""

    parameters: list[Parameter] = Field(default_factory=list)
    header_parameters: list[Parameter] = Field(default_factory=list)
    button_parameters: list[Parameter] = Field(default_factory=list)


class RecipientDispatched(TenantEventData):
    organization_id: uuid.UUID
    campaign_id: uuid.UUID
    recipient_id: uuid.UUID
    contact_id: uuid.UUID
    number_id: uuid.UUID
    template: DispatchedTemplate
    #: the spec object, or (tolerated) just the body's parameters as a list
    parameters: ParameterSpec | list[Parameter] = Field(default_factory=ParameterSpec)

    def template_request(self) -> TemplateRequest:
        spec = self.parameters
        if isinstance(spec, list):
            spec = ParameterSpec(parameters=spec)
        return TemplateRequest(
            name=self.template.name,
            language=self.template.language,
            parameters=outreach.parameters(spec.parameters),
            header_parameters=outreach.parameters(spec.header_parameters),
            button_parameters=outreach.parameters(spec.button_parameters),
        )


def refusal_code(error: DomainError) -> str:
    for kind, code in REFUSAL_CODES.items():
        if isinstance(error, kind):
            return code
    return error.code


# --- the handler -------------------------------------------------------------------------


async def send_to_recipient(
    session: AsyncSession, event: CloudEvent, *, hours: float, directory: Any
) -> None:
    data = event.parse_data(RecipientDispatched)
    org = data.organization_id
    claimed = await session.scalar(
        pg_insert(campaign_recipients)
        .values(id=data.recipient_id, organization_id=org, campaign_id=data.campaign_id)
        .on_conflict_do_nothing()
        .returning(campaign_recipients.c.id)
    )
    if claimed is None:
        return  # handled already: its message (or refusal) exists, its events were staged
    sender = Sender.campaign(org, data.campaign_id, data.recipient_id)
    try:
        # A refusal can come after a conversation was opened: the savepoint undoes it.
        async with session.begin_nested():
            if directory is not None and directory.is_suspended(org):
                raise OrganizationSuspended("the organization is suspended; nothing can be sent")
            started = await start(
                session,
                sender,
                data.contact_id,
                data.number_id,
                template=data.template_request(),
                text=None,
                hours=hours,
                directory=directory,
            )
    except DomainError as error:
        code = refusal_code(error)
        await _record(session, org, data.recipient_id, refused_code=code)
        refused = MessageRefused(
            organization_id=org,
            campaign_id=data.campaign_id,
            recipient_id=data.recipient_id,
            contact_id=data.contact_id,
            number_id=data.number_id,
            code=code,
            detail=error.detail,
        )
        await emit(session, refused, data.recipient_id, org)
        return
    await _record(session, org, data.recipient_id, message_id=started.message.id)


async def _record(
    session: AsyncSession, org: uuid.UUID, recipient_id: uuid.UUID, **values: Any
) -> None:
    await session.execute(
        update(campaign_recipients)
        .where(
            campaign_recipients.c.organization_id == org,
            campaign_recipients.c.id == recipient_id,
        )
        .values(**values)
    )


def campaign_handlers(
    hours: float = DEFAULT_WINDOW_HOURS, directory: Any = None
) -> dict[str, Handler]:
    """The consumer's handlers of campaigns' events (``directory``: the organizations'
    plan, limits and suspension, when the platform provides it)."""

    async def on_recipient_dispatched(session: AsyncSession, event: CloudEvent) -> None:
        await send_to_recipient(session, event, hours=hours, directory=directory)

    return {CAMPAIGNS_RECIPIENT_DISPATCHED_V1: on_recipient_dispatched}
