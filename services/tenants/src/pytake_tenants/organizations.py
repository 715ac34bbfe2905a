"""Organization changes and the events they publish (shared by tenants' own and operator routes).

Every function runs in the caller's transaction and stages its events there;
only route and consumer handlers commit.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.errors import Conflict, InvalidInput, NotFound
from pytake_common.events import EventData
from pytake_common.outbox import emit
from pytake_tenants.events import (
    OrganizationPlanChanged,
    OrganizationReactivated,
    OrganizationSuspended,
    OrganizationUpdated,
)
from pytake_tenants.org_settings import (
    OrganizationSettings,
    OrganizationSettingsPatch,
    Profile,
    merge_profile,
    merge_settings,
)
from pytake_tenants.plans import DEFAULT_PLAN, Limits, get_plan, limits_of
from pytake_tenants.tables import organizations

ACTIVE, SUSPENDED = "active", "suspended"
SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,58}[a-z0-9])?$"


class Organization(BaseModel):
    id: uuid.UUID
    name: str
    slug: str
    plan: str
    status: str
    limits: Limits
    trial_ends_at: datetime | None
    profile: Profile
    settings: OrganizationSettings
    suspended_at: datetime | None
    suspension_reason: str | None
    created_at: datetime
    updated_at: datetime


class OrganizationPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    profile: Profile | None = None
    settings: OrganizationSettingsPatch | None = None


class OperatorOrganizationPatch(OrganizationPatch):
    slug: str | None = Field(default=None, pattern=SLUG_PATTERN)


class OrganizationNotFound(NotFound):
    """No such organization (for the caller's own, see :mod:`pytake_tenants.pending`)."""


def to_view(row: Any) -> Organization:
    data = dict(row)
    data["limits"] = limits_of(data["plan"])
    return Organization.model_validate(data)


def snapshot(org: Organization) -> dict[str, Any]:
    """The audit log's before/after picture."""
    return org.model_dump(mode="json", exclude={"created_at", "updated_at"})


async def load(session: AsyncSession, org_id: uuid.UUID, *, lock: bool = False) -> Organization:
    stmt = select(organizations).where(organizations.c.id == org_id)
    if lock:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).mappings().first()
    if row is None:
        raise OrganizationNotFound(f"organization {org_id} not found")
    return to_view(row)


async def publish(session: AsyncSession, org_id: uuid.UUID, payload: EventData) -> None:
    await emit(session, payload, org_id)


def _updated(org: Organization) -> OrganizationUpdated:
    return OrganizationUpdated(
        organization_id=org.id,
        name=org.name,
        slug=org.slug,
        plan=org.plan,
        status=org.status,
        settings=org.settings.model_dump(mode="json"),
    )


async def apply_patch(
    session: AsyncSession, org_id: uuid.UUID, patch: OrganizationPatch
) -> tuple[Organization, Organization]:
    """Validate the merged document, then write it; nothing is written when invalid."""
    before = await load(session, org_id, lock=True)
    values: dict[str, Any] = {}
    fields = patch.model_fields_set
    if "name" in fields:
        if patch.name is None or not patch.name.strip():
            raise InvalidInput("name must not be blank")
        values["name"] = patch.name.strip()
    if isinstance(patch, OperatorOrganizationPatch) and "slug" in fields:
        if patch.slug is None:
            raise InvalidInput("slug must not be null")
        values["slug"] = patch.slug
    if patch.profile is not None:
        values["profile"] = merge_profile(before.profile.model_dump(mode="json"), patch.profile)
    if patch.settings is not None:
        values["settings"] = merge_settings(before.settings.model_dump(mode="json"), patch.settings)
    current = {
        "name": before.name,
        "slug": before.slug,
        "profile": before.profile.model_dump(mode="json"),
        "settings": before.settings.model_dump(mode="json"),
    }
    values = {k: v for k, v in values.items() if current[k] != v}
    if not values:
        return before, before
    try:
        async with session.begin_nested():
            await session.execute(
                update(organizations)
                .where(organizations.c.id == org_id)
                .values(**values, updated_at=func.now())
            )
    except IntegrityError as exc:
        raise Conflict("slug is already taken", field="slug") from exc
    after = await load(session, org_id)
    await publish(session, org_id, _updated(after))
    return before, after


async def change_plan(
    session: AsyncSession,
    org_id: uuid.UUID,
    plan_name: str,
    trial_ends_at: datetime | None,
    changed_by: uuid.UUID | None,
    *,
    check_future: bool = True,
) -> tuple[Organization, Organization]:
    plan = get_plan(plan_name)
    if trial_ends_at is not None and plan.name == DEFAULT_PLAN:
        raise InvalidInput("the free plan has no trial")
    if check_future and trial_ends_at is not None and trial_ends_at <= datetime.now(UTC):
        raise InvalidInput("trial_ends_at must be in the future")
    before = await load(session, org_id, lock=True)
    if before.plan == plan.name and before.trial_ends_at == trial_ends_at:
        return before, before
    await session.execute(
        update(organizations)
        .where(organizations.c.id == org_id)
        .values(plan=plan.name, trial_ends_at=trial_ends_at, updated_at=func.now())
    )
    after = await load(session, org_id)
    payload = OrganizationPlanChanged(
        organization_id=org_id,
        plan=after.plan,
        limits=after.limits,
        trial_ends_at=after.trial_ends_at,
        changed_by=changed_by,
    )
    await publish(session, org_id, payload)
    return before, after


async def suspend(
    session: AsyncSession, org_id: uuid.UUID, reason: str, changed_by: uuid.UUID
) -> tuple[Organization, Organization]:
    before = await load(session, org_id, lock=True)
    if before.status == SUSPENDED:
        return before, before
    await session.execute(
        update(organizations)
        .where(organizations.c.id == org_id)
        .values(
            status=SUSPENDED,
            suspended_at=func.now(),
            suspension_reason=reason,
            updated_at=func.now(),
        )
    )
    after = await load(session, org_id)
    payload = OrganizationSuspended(organization_id=org_id, reason=reason, changed_by=changed_by)
    await publish(session, org_id, payload)
    return before, after


async def reactivate(
    session: AsyncSession, org_id: uuid.UUID, changed_by: uuid.UUID
) -> tuple[Organization, Organization]:
    before = await load(session, org_id, lock=True)
    if before.status == ACTIVE:
        return before, before
    await session.execute(
        update(organizations)
        .where(organizations.c.id == org_id)
        .values(status=ACTIVE, suspended_at=None, suspension_reason=None, updated_at=func.now())
    )
    after = await load(session, org_id)
    await publish(
        session, org_id, OrganizationReactivated(organization_id=org_id, changed_by=changed_by)
    )
    return before, after
