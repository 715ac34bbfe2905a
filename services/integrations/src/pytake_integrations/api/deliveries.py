"""An endpoint's delivery log, replays and test events."""

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select, tuple_

from pytake_common.errors import NotFound
from pytake_common.pagination import ROW_ID, TIMESTAMP, keyset
from pytake_common.security import Admin, Reader
from pytake_integrations import endpoints, public, queue
from pytake_integrations.api.deps import DB
from pytake_integrations.tables import deliveries

#: an endpoint's deliveries, newest first, by (created_at, id)
DELIVERIES = keyset("webhook-deliveries", TIMESTAMP, ROW_ID)

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhook-endpoints"])


class Delivery(BaseModel):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    completed_at: datetime | None
    response_status: int | None
    response_body: str | None
    latency_ms: int | None
    last_error: str | None
    replay_of: uuid.UUID | None
    created_at: datetime


class DeliveryPage(BaseModel):
    items: list[Delivery]
    next_cursor: str | None


class Queued(BaseModel):
    delivery_id: uuid.UUID
    event_id: uuid.UUID


def _view(row: object) -> Delivery:
    data = dict(row)  # type: ignore[call-overload]
    if data["status"] != "pending":
        data["next_attempt_at"] = None
    return Delivery.model_validate(data)


@router.get("/{endpoint_id}/deliveries", response_model=DeliveryPage)
async def list_deliveries(
    endpoint_id: uuid.UUID,
    principal: Reader,
    db: DB,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DeliveryPage:
    before = DELIVERIES.decode(cursor) if cursor else None
    org = principal.organization_id
    d = deliveries.c
    async with db.transaction(organization_id=org) as session:
        await endpoints.load(session, org, endpoint_id)
        stmt = select(deliveries).where(d.endpoint_id == endpoint_id, d.organization_id == org)
        if before is not None:
            stmt = stmt.where(tuple_(d.created_at, d.id) < tuple_(*before))
        stmt = stmt.order_by(d.created_at.desc(), d.id.desc()).limit(limit + 1)
        rows = (await session.execute(stmt)).mappings().all()
    items = [_view(r) for r in rows[:limit]]
    more = len(rows) > limit
    next_cursor = DELIVERIES.encode((items[-1].created_at, items[-1].id)) if more else None
    return DeliveryPage(items=items, next_cursor=next_cursor)


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/replay", status_code=202, response_model=Queued
)
async def replay(
    endpoint_id: uuid.UUID, delivery_id: uuid.UUID, principal: Admin, db: DB
) -> JSONResponse:
    """Send a delivery's event again, as a new delivery (a new ``PyTake-Delivery-Id``, the
    same event id and body), whatever became of the first one."""
    org = principal.organization_id
    d = deliveries.c
    async with db.transaction(organization_id=org) as session:
        await endpoints.load(session, org, endpoint_id)
        original = (
            (
                await session.execute(
                    select(deliveries).where(
                        d.id == delivery_id, d.endpoint_id == endpoint_id, d.organization_id == org
                    )
                )
            )
            .mappings()
            .first()
        )
        if original is None:
            raise NotFound("delivery not found")
        new_id = await queue.enqueue_one(
            session,
            org,
            endpoint_id,
            original["event_id"],
            original["event_type"],
            original["body"],
            original["ordering_key"],
            replay_of=original["replay_of"] or original["id"],
        )
    body = Queued(delivery_id=new_id, event_id=original["event_id"])
    return JSONResponse(body.model_dump(mode="json"), status_code=202)


@router.post("/{endpoint_id}/test", status_code=202, response_model=Queued)
async def send_test(endpoint_id: uuid.UUID, principal: Admin, db: DB) -> JSONResponse:
    """Queue an ``endpoint.test`` event to the endpoint (signed like any delivery)."""
    org = principal.organization_id
    event_id = uuid.uuid4()
    data = public.EndpointTest(endpoint_id=endpoint_id, message="Hello from PyTake")
    event = public.event_of(
        data, event_id=event_id, organization_id=org, created_at=datetime.now(UTC)
    )
    async with db.transaction(organization_id=org) as session:
        await endpoints.load(session, org, endpoint_id)
        new_id = await queue.enqueue_one(
            session,
            org,
            endpoint_id,
            event_id,
            event.type,
            event.model_dump_json(),
            f"test:{event_id}",
            replay_of=None,
        )
    body = Queued(delivery_id=new_id, event_id=event_id)
    return JSONResponse(body.model_dump(mode="json"), status_code=202)
