"""``GET /v1/conversations/metrics`` (the figures are :mod:`pytake_conversations.metrics`')."""

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from pytake_common.errors import InvalidInput
from pytake_common.security import Reader
from pytake_conversations import metrics as figures
from pytake_conversations.api.deps import DB
from pytake_conversations.metrics import Metrics

router = APIRouter(prefix="/v1/conversations", tags=["metrics"])
MAX_RANGE = timedelta(days=366)


@router.get("/metrics", response_model=Metrics, response_model_by_alias=True)
async def metrics(
    principal: Reader,
    db: DB,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
) -> Metrics:
    """Times in seconds over ``[from, to)`` (default: the last 7 days), for the
    organization and per agent."""
    end = to or datetime.now(UTC)
    start = from_ or end - timedelta(days=7)
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("from and to need a time zone (RFC 3339)")
    if not start < end or end - start > MAX_RANGE:
        raise InvalidInput("from must be before to, at most 366 days apart")
    async with db.transaction(organization_id=principal.organization_id) as session:
        return await figures.measure(session, principal.organization_id, start, end)
