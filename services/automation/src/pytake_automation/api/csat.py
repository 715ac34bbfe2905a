"""``/v1/automation/csat``: the survey's settings, its answers and the report."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from pytake_automation import csat, csat_report
from pytake_automation.csat import CsatSettings
from pytake_automation.csat_report import Report, Response
from pytake_common.db import Database
from pytake_common.errors import InvalidInput
from pytake_common.security import Admin, Reader
from pytake_common.web import request_db

DB = Annotated[Database, Depends(request_db)]
MAX_RANGE = timedelta(days=366)

router = APIRouter(prefix="/v1/automation/csat", tags=["csat"])


class ResponsePage(BaseModel):
    items: list[Response]
    next_cursor: str | None


@router.get("", response_model=CsatSettings)
async def get_settings(principal: Reader, db: DB) -> CsatSettings:
    async with db.transaction(organization_id=principal.organization_id) as session:
        return await csat.load_settings(session, principal.organization_id)


@router.put("", response_model=CsatSettings)
async def put_settings(body: CsatSettings, principal: Admin, db: DB) -> CsatSettings:
    """Replace the settings (fields left out take their defaults)."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return await csat.save_settings(session, org, principal.user_id, body)


@router.get("/responses", response_model=ResponsePage)
async def list_responses(
    principal: Reader,
    db: DB,
    agent_id: uuid.UUID | None = None,
    department_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ResponsePage:
    """Answered surveys, newest answer first."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        items, next_cursor = await csat_report.responses_page(
            session, org, limit, cursor, agent_id=agent_id, department_id=department_id
        )
    return ResponsePage(items=items, next_cursor=next_cursor)


@router.get("/report", response_model=Report, response_model_by_alias=True)
async def get_report(
    principal: Reader,
    db: DB,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
) -> Report:
    """Surveys sent in ``[from, to)`` (default: the last 30 days): organization, agents,
    departments."""
    end = to or datetime.now(UTC)
    start = from_ or end - timedelta(days=30)
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("from and to need a time zone (RFC 3339)")
    if not start < end or end - start > MAX_RANGE:
        raise InvalidInput("from must be before to, at most 366 days apart")
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return await csat_report.report(session, org, start, end)
