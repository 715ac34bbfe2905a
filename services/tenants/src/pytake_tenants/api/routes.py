import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.db import Database
from pytake_common.errors import NotFound
from pytake_common.events import CloudEvent
from pytake_common.outbox import add_event
from pytake_common.security import Admin, Principal, Reader
from pytake_common.web import request_db
from pytake_tenants.events import OrganizationUpdated
from pytake_tenants.tables import organizations

router = APIRouter(prefix="/v1/organizations", tags=["organizations"])


class Organization(BaseModel):
    id: uuid.UUID
    name: str
    slug: str
    plan: str
    status: str
    created_at: datetime
    updated_at: datetime


class OrganizationPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)


async def _load(session: AsyncSession, org_id: uuid.UUID) -> Organization:
    row = (
        (await session.execute(select(organizations).where(organizations.c.id == org_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound("organization not found (it may still be being created)")
    return Organization.model_validate(dict(row))


DB = Annotated[Database, Depends(request_db)]


@router.get("/me", response_model=Organization)
async def get_my_organization(principal: Reader, db: DB) -> Organization:
    async with db.transaction(organization_id=principal.organization_id) as session:
        return await _load(session, principal.organization_id)


@router.patch("/me", response_model=Organization)
async def patch_my_organization(body: OrganizationPatch, principal: Admin, db: DB) -> Organization:
    return await _patch(db, principal, body)


async def _patch(db: Database, principal: Principal, body: OrganizationPatch) -> Organization:
    async with db.transaction(organization_id=principal.organization_id) as session:
        org = await _load(session, principal.organization_id)
        changes = body.model_dump(exclude_unset=True, exclude_none=True)
        if not changes:
            return org
        await session.execute(
            update(organizations)
            .where(organizations.c.id == org.id)
            .values(**changes, updated_at=func.now())
        )
        org = await _load(session, org.id)
        await add_event(
            session,
            CloudEvent.of(
                OrganizationUpdated(
                    organization_id=org.id,
                    name=org.name,
                    slug=org.slug,
                    plan=org.plan,
                    status=org.status,
                ),
                service="tenants",
                subject=org.id,
                tenant_id=org.id,
            ),
        )
        return org
