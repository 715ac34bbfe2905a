"""Dependencies shared by the conversations routers."""

from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from pytake_common.db import Database
from pytake_common.rawpg import TenantReads
from pytake_common.web import request_db
from pytake_conversations.domain import DEFAULT_WINDOW_HOURS

DB = Annotated[Database, Depends(request_db)]
Limit = Annotated[int, Query(ge=1, le=200)]


def reads_of(request: Request) -> TenantReads:
    reads: TenantReads = request.app.state.reads
    return reads


async def _reads(request: Request) -> TenantReads:
    return reads_of(request)


#: the light read-only path (raw asyncpg, tenant-bound) of the hot list endpoints
Reads = Annotated[TenantReads, Depends(_reads)]


def window_hours_of(request: Request) -> float:
    return float(getattr(request.app.state.settings, "service_window_hours", DEFAULT_WINDOW_HOURS))


async def _window_hours(request: Request) -> float:
    return window_hours_of(request)


WindowHours = Annotated[float, Depends(_window_hours)]


def at_risk_window_of(request: Request) -> timedelta:
    """How soon an unmet SLA target counts as at risk (the service's setting)."""
    return timedelta(minutes=float(getattr(request.app.state.settings, "sla_at_risk_minutes", 30)))


async def _at_risk_window(request: Request) -> timedelta:
    return at_risk_window_of(request)


AtRiskWindow = Annotated[timedelta, Depends(_at_risk_window)]


async def organizations(request: Request) -> Any:
    """The organization directory (plan, limits, suspension) when the platform provides one."""
    return getattr(request.app.state, "organizations", None)


Organizations = Annotated[Any, Depends(organizations)]
