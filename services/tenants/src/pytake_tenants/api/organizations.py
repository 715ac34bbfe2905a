"""``/v1/organizations/me``: the caller's organization, its usage and activity.

Each waits a few seconds for an organization that is still being created from the
caller's sign-up (:mod:`pytake_tenants.pending`) before answering 503.
"""

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.errors import InvalidInput
from pytake_common.security import Admin, Reader
from pytake_tenants import organizations, stats, usage
from pytake_tenants.api.deps import DB
from pytake_tenants.pending import when_created

router = APIRouter(prefix="/v1/organizations", tags=["organizations"])
MAX_STATS_DAYS = 366
PENDING: dict[int | str, dict[str, Any]] = {
    503: {"description": "The organization is still being created: retry (Retry-After)"}
}


def _wait_s(request: Request) -> float:
    wait: float = request.app.state.settings.organization_wait_s
    return wait


@router.get("/me", response_model=organizations.Organization, responses=PENDING)
async def get_my_organization(
    principal: Reader, db: DB, request: Request
) -> organizations.Organization:
    org = principal.organization_id

    async def read(session: AsyncSession) -> organizations.Organization:
        return await organizations.load(session, org)

    return await when_created(db, org, read, _wait_s(request))


@router.patch(
    "/me",
    response_model=organizations.Organization,
    responses={
        422: {"description": "Invalid name, profile or settings; nothing was changed"},
        **PENDING,
    },
)
async def patch_my_organization(
    body: organizations.OrganizationPatch, principal: Admin, db: DB, request: Request
) -> organizations.Organization:
    org = principal.organization_id

    async def patch(session: AsyncSession) -> organizations.Organization:
        _, after = await organizations.apply_patch(session, org, body)
        return after

    return await when_created(db, org, patch, _wait_s(request))


@router.get("/me/usage", response_model=usage.UsageReport, responses=PENDING)
async def get_my_usage(principal: Reader, db: DB, request: Request) -> usage.UsageReport:
    org = principal.organization_id

    async def read(session: AsyncSession) -> usage.UsageReport:
        current = await organizations.load(session, org)
        return await usage.usage_report(session, org, current.plan)

    return await when_created(db, org, read, _wait_s(request))


@router.get("/me/stats", response_model=stats.Stats, responses=PENDING)
async def get_my_stats(
    principal: Reader,
    db: DB,
    request: Request,
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

    async def read(session: AsyncSession) -> stats.Stats:
        await organizations.load(session, org)
        return await stats.stats(session, org, start, end)

    return await when_created(db, org, read, _wait_s(request))
