"""Starting a conversation: find or open the contact's conversation on a number.

Runs inside the caller's transaction and never commits. Reads only conversations' own
tables and replicas (``outreach_replicas.py``): no call to another service.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ScalarSelect, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.outbox import emit
from pytake_conversations import outreach
from pytake_conversations.domain import ACTIVE, CLOSED, OPEN
from pytake_conversations.events import ConversationOpened
from pytake_conversations.inbox import Row, auto_assign, push_conversation
from pytake_conversations.outbound import SendMessage, TemplateInput, TextInput
from pytake_conversations.senders import Sender
from pytake_conversations.sending import request_send
from pytake_conversations.tables import (
    contact_replicas,
    conversations,
    number_replicas,
    template_replicas,
)
from pytake_conversations.views import Message


def previous_closed(org: Any, contact_id: Any, number_id: Any) -> ScalarSelect[Any]:
    """SQL: the contact's latest closed conversation on the number (a new one links to it)."""
    c = conversations.c
    return (
        select(c.id)
        .where(
            c.organization_id == org,
            c.contact_id == contact_id,
            c.number_id == number_id,
            c.status == CLOSED,
        )
        .order_by(c.closed_at.desc().nulls_last(), c.created_at.desc())
        .limit(1)
        .scalar_subquery()
    )


@dataclass(frozen=True, slots=True)
class Target:
    """Whom to write to, from which number."""

    number: RowMapping
    contact: RowMapping
    wa_id: str | None
    user_id: str | None

    def profile(self) -> outreach.Contact:
        return outreach.Contact(
            name=self.contact["name"],
            phone=self.contact["phone"],
            attributes=self.contact["attributes"] or {},
            marketing_opt_in=self.contact["marketing_opt_in"],
        )


async def load_target(
    session: AsyncSession, org: uuid.UUID, contact_id: uuid.UUID, number_id: uuid.UUID
) -> Target:
    """The number and the contact, both of this organization (else 404), and sendable."""
    number = (
        (
            await session.execute(
                select(number_replicas).where(
                    number_replicas.c.id == number_id, number_replicas.c.organization_id == org
                )
            )
        )
        .mappings()
        .first()
    )
    number = outreach.check_number(number)
    contact = (
        (
            await session.execute(
                select(contact_replicas).where(
                    contact_replicas.c.id == contact_id, contact_replicas.c.organization_id == org
                )
            )
        )
        .mappings()
        .first()
    )
    contact = outreach.check_contact(contact)
    wa_id, user_id = contact["wa_id"], contact["user_id"]
    if not (wa_id or user_id):
        # A contact that wrote before contacts' event carried its ids: its conversations know.
        known = (
            await session.execute(
                select(conversations.c.wa_id, conversations.c.user_id)
                .where(
                    conversations.c.organization_id == org,
                    conversations.c.contact_id == contact_id,
                    or_(conversations.c.wa_id.is_not(None), conversations.c.user_id.is_not(None)),
                )
                .order_by(conversations.c.last_message_at.desc())
                .limit(1)
            )
        ).first()
        if known is not None:
            wa_id, user_id = known.wa_id, known.user_id
    outreach.check_recipient(wa_id, user_id)
    return Target(number, contact, wa_id, user_id)


async def load_template(
    session: AsyncSession, org: uuid.UUID, number: RowMapping, name: str, language: str
) -> outreach.Template:
    """The template of the number's WhatsApp Business Account (422 when unknown)."""
    t = template_replicas.c
    row = (
        (
            await session.execute(
                select(template_replicas)
                .where(
                    t.organization_id == org,
                    t.name == name,
                    t.language == language,
                    or_(t.waba_id == number["waba_id"], t.number_id == number["id"]),
                )
                .order_by(t.version_at.desc())
                .limit(1)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise outreach.TemplateNotFound(
            f"the number's WhatsApp Business Account has no template {name} in {language}",
            template=name,
            language=language,
        )
    return outreach.Template(
        name=row["name"],
        language=row["language"],
        category=row["category"],
        status=row["status"],
        components=row["components"],
    )


async def lock_active(
    session: AsyncSession, org: uuid.UUID, contact_id: uuid.UUID, number_id: uuid.UUID
) -> RowMapping | None:
    """The contact's active conversation on the number, locked; None if there is none."""
    c = conversations.c
    return (
        (
            await session.execute(
                select(conversations)
                .where(
                    c.organization_id == org,
                    c.contact_id == contact_id,
                    c.number_id == number_id,
                    c.status.in_(ACTIVE),
                )
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )


async def open_or_reuse(
    session: AsyncSession, org: uuid.UUID, target: Target, started_by: uuid.UUID
) -> tuple[Row, bool]:
    """The contact's active conversation on the number (reused: True), or a new one.

    A new one links to the contact's last closed conversation on the number and carries
    the customer's last message time over from it: WhatsApp's 24-hour window belongs to
    the customer and the number, not to our conversation. Race-safe like inbound
    messages: two starts meet on the one-active-conversation index.
    """
    contact_id, number_id = target.contact["id"], target.number["id"]
    for _ in range(5):
        active = await lock_active(session, org, contact_id, number_id)
        if active is not None:
            return active, True
        last_inbound = (
            select(func.max(conversations.c.last_inbound_at))
            .where(
                conversations.c.organization_id == org,
                conversations.c.contact_id == contact_id,
                conversations.c.number_id == number_id,
            )
            .scalar_subquery()
        )
        created = (
            (
                await session.execute(
                    pg_insert(conversations)
                    .values(
                        id=uuid.uuid4(),
                        organization_id=org,
                        contact_id=contact_id,
                        number_id=number_id,
                        phone_number_id=target.number["phone_number_id"],
                        wa_id=target.wa_id,
                        user_id=target.user_id,
                        status=OPEN,
                        last_inbound_at=last_inbound,
                        previous_conversation_id=previous_closed(org, contact_id, number_id),
                        started_by=started_by,
                    )
                    .on_conflict_do_nothing()
                    .returning(*conversations.c)
                )
            )
            .mappings()
            .first()
        )
        if created is None:
            continue  # a concurrent start or inbound message opened it: lock that one
        await push_conversation(session, org, created, "conversation.created")
        opened = ConversationOpened(
            conversation_id=created["id"],
            organization_id=org,
            contact_id=contact_id,
            number_id=number_id,
            opened_at=created["created_at"],
            previous_conversation_id=created["previous_conversation_id"],
            started_by=started_by,
        )
        await emit(session, opened, created["id"], org)
        return await auto_assign(session, org, created), False
    raise RuntimeError(f"could not open a conversation for contact {contact_id}")


@dataclass(frozen=True, slots=True)
class TemplateRequest:
    """A template of the number's WhatsApp Business Account and how to fill it."""

    name: str
    language: str
    parameters: Sequence[outreach.Parameter] = ()
    header_parameters: Sequence[outreach.Parameter] = ()
    button_parameters: Sequence[outreach.Parameter] = ()


@dataclass(frozen=True, slots=True)
class Started:
    conversation_id: uuid.UUID
    message: Message
    #: the contact's active conversation on the number was reused
    reused: bool


async def start(
    session: AsyncSession,
    sender: Sender,
    contact_id: uuid.UUID,
    number_id: uuid.UUID,
    *,
    template: TemplateRequest | None,
    text: TextInput | None,
    hours: float,
    directory: Any,
) -> Started:
    """Write to a contact first: the rules of ``POST /v1/conversations``, for every sender
    (an agent through the API, a campaign's recipient through its event).

    A refusal is a ``DomainError``, raised possibly after a conversation was opened: the
    caller rolls its transaction (or savepoint) back.
    """
    org = sender.organization_id
    target = await load_target(session, org, contact_id, number_id)
    preview = None
    if template is not None:
        found = await load_template(session, org, target.number, template.name, template.language)
        contact = target.profile()
        outreach.check_template(found, contact)
        components, values = outreach.components(
            found,
            template.parameters,
            template.header_parameters,
            contact,
            template.button_parameters,
        )
        preview = outreach.rendered_body(found, values)
        send = SendMessage(
            type="template",
            template=TemplateInput(name=found.name, language=found.language, components=components),
        )
    else:
        send = SendMessage(type="text", text=text)
    conv, reused = await open_or_reuse(session, org, target, sender.id)
    message = await request_send(
        session, sender, conv["id"], send, hours, directory, preview=preview
    )
    return Started(conv["id"], message, reused)
