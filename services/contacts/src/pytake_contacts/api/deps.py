"""Dependencies and helpers shared by the API modules."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from pytake_common.db import Database
from pytake_common.rawpg import TenantReads
from pytake_common.web import request_db
from pytake_contacts.search import ContactFilter

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


def directory_of(request: Request) -> Any:
    """The organization directory (plan limits), started by create_service_app; None
    when the platform gives none."""
    return getattr(request.app.state, "organizations", None)
