"""Dependencies and helpers shared by the API modules."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.db import Database
from pytake_common.rawpg import TenantReads
from pytake_common.web import request_db
from pytake_contacts.search import ContactFilter
from pytake_contacts.tables import contacts

DB = Annotated[Database, Depends(request_db)]


def reads_of(request: Request) -> TenantReads:
    reads: TenantReads = request.app.state.reads
    return reads


async def _reads(request: Request) -> TenantReads:
    return reads_of(request)


#: the light read-only path (raw asyncpg, tenant-bound) of the hot list endpoint
Reads = Annotated[TenantReads, Depends(_reads)]


async def contact_filter(
    q: Annotated[str | None, Query(max_length=200)] = None,
    tag_id: uuid.UUID | None = None,
    assignee_id: uuid.UUID | None = None,
    unassigned: bool | None = None,
    blocked: bool | None = None,
    opted_in: bool | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    last_interaction_from: datetime | None = None,
    last_interaction_to: datetime | None = None,
) -> ContactFilter:
    """The list's filters (the list's fast path calls it too, with the values it read)."""
    return ContactFilter(
        q=q,
        tag_id=tag_id,
        assignee_id=assignee_id,
        unassigned=unassigned,
        blocked=blocked,
        opted_in=opted_in,
        created_from=created_from,
        created_to=created_to,
        interacted_from=last_interaction_from,
        interacted_to=last_interaction_to,
    )


Filter = Annotated[ContactFilter, Depends(contact_filter)]


def _directory(request: Request) -> Any:
    # The organization directory (plan limits) is started by create_service_app.
    return getattr(request.app.state, "organizations", None)


async def contact_limit(request: Request, session: AsyncSession, org: uuid.UUID) -> int | None:
    """How many more contacts the plan allows (None: unlimited), serialising creators.

    The advisory lock makes concurrent creators of one organization count in turn, so
    two requests cannot both take the last free place.
    """
    directory = _directory(request)
    if directory is None:
        return None
    allowed: int | None = directory.limit(org, "contacts")
    if allowed is None:
        return None
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"contacts-limit:{org}"}
    )
    return allowed - await live_count(session, org)


async def check_contact_limit(request: Request, session: AsyncSession, org: uuid.UUID) -> None:
    """Raise PlanLimitExceeded (402) when one more contact would pass the plan's limit."""
    free = await contact_limit(request, session, org)
    if free is not None and free <= 0:
        used = await live_count(session, org)
        await _directory(request).check_limit(org, "contacts", used=used)


async def live_count(session: AsyncSession, org: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(contacts)
        .where(contacts.c.organization_id == org, contacts.c.deleted_at.is_(None))
    )
    return int(count or 0)
