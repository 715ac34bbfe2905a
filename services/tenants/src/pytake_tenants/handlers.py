"""Consumers of other services' events.

auth's user events create the organization (registration) and keep the users
replica; whatsapp's, contacts' and conversations' events feed usage and stats.
Each handler runs in the inbox's transaction (the same event id is handled once)
and is idempotent against the same fact under another event id.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.auth_users import apply_user_event, user_handlers
from pytake_common.consumer import Handler, SetHandler
from pytake_common.event_types import (
    AUTH_USER_REGISTERED_V1,
    CONTACTS_CONTACT_CREATED_V1,
    CONTACTS_CONTACT_ERASED_V1,
    CONVERSATIONS_CONVERSATION_OPENED_V1,
    CONVERSATIONS_MESSAGE_APPENDED_V1,
    WHATSAPP_MESSAGE_SENT_V1,
    WHATSAPP_NUMBER_REGISTERED_V1,
    WHATSAPP_NUMBER_REMOVED_V1,
)
from pytake_common.events import CloudEvent, TenantEventData
from pytake_common.security import Role
from pytake_tenants import stats
from pytake_tenants.departments import drop_member_everywhere
from pytake_tenants.domain import slugify
from pytake_tenants.events import OrganizationCreated
from pytake_tenants.org_settings import default_settings
from pytake_tenants.organizations import publish
from pytake_tenants.plans import DEFAULT_PLAN, OPERATORS_PLAN, get_plan, limits_of
from pytake_tenants.tables import organizations, users
from pytake_tenants.usage import (
    BUSINESS_MESSAGE,
    CONTACT,
    NUMBER,
    count_facts,
    month_of,
    remove_fact,
)


# What tenants reads of each event (tolerant readers: other fields are ignored).
class UserRegistered(TenantEventData):
    user_id: uuid.UUID
    organization_id: uuid.UUID
    organization_name: str
    full_name: str | None = None
    role: str = "org_admin"


class NumberRef(TenantEventData):
    number_id: uuid.UUID
    organization_id: uuid.UUID


class ContactRef(TenantEventData):
    contact_id: uuid.UUID
    organization_id: uuid.UUID


class MessageSent(TenantEventData):
    message_id: uuid.UUID
    organization_id: uuid.UUID
    sent_at: datetime


class ConversationOpened(TenantEventData):
    conversation_id: uuid.UUID
    organization_id: uuid.UUID
    opened_at: datetime


class MessageAppended(TenantEventData):
    message_id: uuid.UUID
    organization_id: uuid.UUID
    direction: str
    created_at: datetime


class SignupPolicy(BaseModel):
    """The plan a new organization starts on: free, or a trial of ``trial_plan``."""

    trial_plan: str | None = None
    trial_days: int = 14


def on_user_registered(policy: SignupPolicy) -> Handler:
    plan = get_plan(policy.trial_plan).name if policy.trial_plan else DEFAULT_PLAN

    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        data = event.parse_data(UserRegistered)
        org_id = data.organization_id
        await apply_user_event(session, users, event)
        operators = data.role == Role.SUPER_ADMIN  # only auth's create-super-admin makes one
        trial_ends_at = (
            datetime.now(UTC) + timedelta(days=policy.trial_days)
            if policy.trial_plan and not operators
            else None
        )
        base = slugify(data.organization_name)
        # Slugs are unique platform-wide; RLS hides other tenants' rows, so let the
        # unique index decide: on a slug clash, fall back to a suffixed slug.
        for slug in (base, f"{base}-{org_id.hex[:8]}"):
            created = (
                await session.execute(
                    pg_insert(organizations)
                    .values(
                        id=org_id,
                        name=data.organization_name,
                        slug=slug,
                        plan=OPERATORS_PLAN if operators else plan,
                        trial_ends_at=trial_ends_at,
                        settings=default_settings(),
                        created_by=data.user_id,
                    )
                    .on_conflict_do_nothing()
                    .returning(organizations.c.plan, organizations.c.status)
                )
            ).first()
            if created is not None:
                payload = OrganizationCreated(
                    organization_id=org_id,
                    name=data.organization_name,
                    slug=slug,
                    plan=created.plan,
                    status=created.status,
                    created_by=data.user_id,
                    limits=limits_of(created.plan),
                    trial_ends_at=trial_ends_at,
                )
                await publish(session, org_id, payload)
                return
            exists = await session.scalar(
                select(organizations.c.id).where(organizations.c.id == org_id)
            )
            if exists is not None:
                return  # already created (the registration replayed under another event id)
        raise RuntimeError(f"no free slug for organization {org_id}")

    return handle


async def on_number_registered(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(NumberRef)
    await count_facts(session, data.organization_id, NUMBER, [(data.number_id, "")])


async def on_number_removed(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(NumberRef)
    await remove_fact(session, data.organization_id, NUMBER, data.number_id)


# Counting commutes, so the per-message events are set-based: a consumer batch's
# records of one organization count in one statement, their inbox marks in another.


async def count_contacts(session: AsyncSession, rows: list[ContactRef]) -> None:
    await count_facts(session, rows[0].organization_id, CONTACT, [(r.contact_id, "") for r in rows])


async def on_contact_erased(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(ContactRef)
    await remove_fact(session, data.organization_id, CONTACT, data.contact_id)


async def count_messages_sent(session: AsyncSession, rows: list[MessageSent]) -> None:
    """Every accepted send counts toward the monthly business messages (see README)."""
    facts = [(r.message_id, month_of(r.sent_at)) for r in rows]
    await count_facts(session, rows[0].organization_id, BUSINESS_MESSAGE, facts)


async def count_openings(session: AsyncSession, rows: list[ConversationOpened]) -> None:
    facts = [stats.opened_fact(r.conversation_id, r.opened_at) for r in rows]
    await stats.count_daily(session, rows[0].organization_id, stats.CONVERSATION_OPENED, facts)


async def count_messages(session: AsyncSession, rows: list[MessageAppended]) -> None:
    facts = [stats.appended_fact(r.message_id, r.direction, r.created_at) for r in rows]
    await stats.count_daily(session, rows[0].organization_id, stats.MESSAGE_APPENDED, facts)


def build_handlers(policy: SignupPolicy | None = None) -> dict[str, Handler]:
    return {
        # auth's users kept in the shared shape; a deleted user leaves every department
        **user_handlers(users, on_deleted=drop_member_everywhere),
        AUTH_USER_REGISTERED_V1: on_user_registered(policy or SignupPolicy()),
        WHATSAPP_NUMBER_REGISTERED_V1: on_number_registered,
        WHATSAPP_NUMBER_REMOVED_V1: on_number_removed,
        WHATSAPP_MESSAGE_SENT_V1: SetHandler(MessageSent, count_messages_sent),
        CONTACTS_CONTACT_CREATED_V1: SetHandler(ContactRef, count_contacts),
        CONTACTS_CONTACT_ERASED_V1: on_contact_erased,
        CONVERSATIONS_CONVERSATION_OPENED_V1: SetHandler(ConversationOpened, count_openings),
        CONVERSATIONS_MESSAGE_APPENDED_V1: SetHandler(MessageAppended, count_messages),
    }


HANDLERS = build_handlers()
