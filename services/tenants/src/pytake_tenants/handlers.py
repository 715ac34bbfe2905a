"""Consumers: the organization is created from auth's registration event."""

import uuid

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.events import CloudEvent
from pytake_common.outbox import add_event
from pytake_tenants.domain import slugify
from pytake_tenants.events import OrganizationCreated
from pytake_tenants.tables import organizations

USER_REGISTERED = "pytake.auth.user.registered.v1"


class UserRegistered(BaseModel):
    """What tenants reads of auth's event (tolerant reader: extra fields ignored)."""

    user_id: uuid.UUID
    organization_id: uuid.UUID
    organization_name: str


async def on_user_registered(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(UserRegistered)
    org_id = data.organization_id
    base = slugify(data.organization_name)
    # Slugs are unique platform-wide; RLS hides other tenants' rows, so let the
    # unique index decide: on a slug clash, fall back to a suffixed slug.
    for slug in (base, f"{base}-{org_id.hex[:8]}"):
        created = (
            await session.execute(
                pg_insert(organizations)
                .values(id=org_id, name=data.organization_name, slug=slug, created_by=data.user_id)
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
            )
            await add_event(
                session, CloudEvent.of(payload, service="tenants", subject=org_id, tenant_id=org_id)
            )
            return
        exists = await session.scalar(
            select(organizations.c.id).where(organizations.c.id == org_id)
        )
        if exists is not None:
            return  # already created (a replay of the registration under another event id)
    raise RuntimeError(f"no free slug for organization {org_id}")


HANDLERS = {USER_REGISTERED: on_user_registered}
