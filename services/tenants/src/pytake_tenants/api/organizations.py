"""``/v1/organizations/me``: the caller's organization, its usage and activity."""

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from pytake_common.errors import InvalidInput
from pytake_common.security import Admin, Reader
from pytake_tenants import organizations, stats, usage
from pytake_tenants.api.deps import DB

router = APIRouter(prefix="/v1/organizations", tags=["organizations"])
MAX_STATS_DAYS = 366


@router.get("/me", response_model=organizations.Organization)
async def get_my_organization(principal: Reader, db: DB) -> organizations.Organization:
    async with db.transaction(organization_id=principal.organization_id) as session:
        return await organizations.load(session, principal.organization_id)


@router.patch(
    "/me",
    response_model=organizations.Organization,
    responses={422: {"description": "Invalid name, profile or settings; nothing was changed"}},
)
async def patch_my_organization(
    body: organizations.OrganizationPatch, principal: Admin, db: DB
) -> organizations.Organization:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        _, after = await organizations.apply_patch(session, org, body)
        return after


@router.get("/me/usage", response_model=usage.UsageReport)
async def get_my_usage(principal: Reader, db: DB) -> usage.UsageReport:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        current = await organizations.load(session, org)
        return await usage.usage_report(session, org, current.plan)


@router.get("/me/stats", response_model=stats.Stats)
async def get_my_stats(
    principal: Reader,
    db: DB,
    start: Annotated[date | None, Query(alias="from", description="first UTC day")] = None,
    end: Annotated[date | None, Query(alias="to", description="last UTC day (inclusive)")] = None,
) -> stats.Stats:
    end = end or datetime.now(UTC).date()
    start = start or end - timedelta(days=29)
    if start > end:
        raise InvalidInput("from must not be after to")
    if (end - start).days >= MAX_STATS_DAYS:
        raise InvalidInput(f"the period may span at most {MAX_STATS_DAYS} days")
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await organizations.load(session, org)
        return await stats.stats(session, org, start, end)
