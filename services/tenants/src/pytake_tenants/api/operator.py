"""Platform operator routes (super_admin only): every organization, plans, suspension.

Each change is recorded in ``audit_log`` in the same transaction as the change.
"""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.pagination import NUMBER, ROW_ID, TIMESTAMP, keyset
from pytake_tenants import audit, organizations, usage
from pytake_tenants.api.deps import DB, SuperAdmin
from pytake_tenants.tables import organizations as organizations_table

#: every organization, oldest first by (created_at, id)
ORGANIZATIONS = keyset("organizations", TIMESTAMP, ROW_ID)
#: the audit log, newest first by its serial id
AUDIT = keyset("audit", NUMBER)

router = APIRouter(prefix="/v1/organizations", tags=["platform operator"])
audit_router = APIRouter(prefix="/v1/audit-log", tags=["platform operator"])


class OrganizationPage(BaseModel):
    items: list[organizations.Organization]
    next_cursor: str | None


class OrganizationWithUsage(organizations.Organization):
    usage: dict[str, usage.UsageItem]


class PlanChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: str
    trial_ends_at: datetime | None = Field(
        default=None, description="the plan is a trial until then, then the free plan applies"
    )


class Suspension(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)


class AuditPage(BaseModel):
    items: list[audit.AuditEntry]
    next_cursor: str | None


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@router.get("", response_model=OrganizationPage)
async def list_organizations(
    _: SuperAdmin,
    db: DB,
    q: Annotated[str | None, Query(max_length=200, description="name or slug contains")] = None,
    status: Literal["active", "suspended"] | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> OrganizationPage:
    table = organizations_table
    stmt = select(table)
    if q and q.strip():
        pattern = _like(q.strip())
        stmt = stmt.where(
            or_(table.c.name.ilike(pattern, escape="\\"), table.c.slug.ilike(pattern, escape="\\"))
        )
    if status is not None:
        stmt = stmt.where(table.c.status == status)
    if cursor:
        at, last = ORGANIZATIONS.decode(cursor)
        stmt = stmt.where(tuple_(table.c.created_at, table.c.id) > tuple_(at, last))
    stmt = stmt.order_by(table.c.created_at, table.c.id).limit(limit + 1)
    async with db.transaction(bypass_rls=True) as session:
        rows = (await session.execute(stmt)).mappings().all()
    items = [organizations.to_view(r) for r in rows[:limit]]
    more = len(rows) > limit
    return OrganizationPage(
        items=items,
        next_cursor=ORGANIZATIONS.encode((items[-1].created_at, items[-1].id)) if more else None,
    )


async def _with_usage(
    session: AsyncSession, org: organizations.Organization
) -> OrganizationWithUsage:
    report = await usage.usage_report(session, org.id, org.plan)
    return OrganizationWithUsage(**org.model_dump(), usage=report.usage)


@router.get("/{organization_id}", response_model=OrganizationWithUsage)
async def get_organization(
    organization_id: uuid.UUID, _: SuperAdmin, db: DB
) -> OrganizationWithUsage:
    async with db.transaction(bypass_rls=True) as session:
        org = await organizations.load(session, organization_id)
        return await _with_usage(session, org)


@router.patch("/{organization_id}", response_model=OrganizationWithUsage)
async def patch_organization(
    organization_id: uuid.UUID,
    body: organizations.OperatorOrganizationPatch,
    principal: SuperAdmin,
    db: DB,
) -> OrganizationWithUsage:
    async with db.transaction(bypass_rls=True) as session:
        before, after = await organizations.apply_patch(session, organization_id, body)
        if after is not before:
            await audit.record(
                session,
                principal,
                "organization.updated",
                organization_id,
                organizations.snapshot(before),
                organizations.snapshot(after),
            )
        return await _with_usage(session, after)


@router.put("/{organization_id}/plan", response_model=OrganizationWithUsage)
async def change_plan(
    organization_id: uuid.UUID, body: PlanChange, principal: SuperAdmin, db: DB
) -> OrganizationWithUsage:
    async with db.transaction(bypass_rls=True) as session:
        before, after = await organizations.change_plan(
            session, organization_id, body.plan, body.trial_ends_at, principal.user_id
        )
        if after is not before:
            await audit.record(
                session,
                principal,
                "organization.plan_changed",
                organization_id,
                organizations.snapshot(before),
                organizations.snapshot(after),
            )
        return await _with_usage(session, after)


@router.post("/{organization_id}/suspend", response_model=OrganizationWithUsage)
async def suspend(
    organization_id: uuid.UUID, body: Suspension, principal: SuperAdmin, db: DB
) -> OrganizationWithUsage:
    reason = body.reason.strip()
    async with db.transaction(bypass_rls=True) as session:
        before, after = await organizations.suspend(
            session, organization_id, reason, principal.user_id
        )
        if after is not before:
            await audit.record(
                session,
                principal,
                "organization.suspended",
                organization_id,
                organizations.snapshot(before),
                organizations.snapshot(after),
                reason=reason,
            )
        return await _with_usage(session, after)


@router.post("/{organization_id}/reactivate", response_model=OrganizationWithUsage)
async def reactivate(
    organization_id: uuid.UUID, principal: SuperAdmin, db: DB
) -> OrganizationWithUsage:
    async with db.transaction(bypass_rls=True) as session:
        before, after = await organizations.reactivate(session, organization_id, principal.user_id)
        if after is not before:
            await audit.record(
                session,
                principal,
                "organization.reactivated",
                organization_id,
                organizations.snapshot(before),
                organizations.snapshot(after),
            )
        return await _with_usage(session, after)


@audit_router.get("", response_model=AuditPage)
async def list_audit_log(
    _: SuperAdmin,
    db: DB,
    organization_id: uuid.UUID | None = None,
    action: Annotated[str | None, Query(max_length=60)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AuditPage:
    before_id = AUDIT.decode(cursor)[0] if cursor else None
    async with db.transaction(bypass_rls=True) as session:
        items, more = await audit.list_entries(
            session,
            organization_id=organization_id,
            action=action,
            before_id=before_id,
            limit=limit,
        )
    last = items[-1] if items else None
    next_cursor = AUDIT.encode((last.id,)) if more and last else None
    return AuditPage(items=items, next_cursor=next_cursor)
