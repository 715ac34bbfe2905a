"""The delivery queue: one row per (endpoint, public event), plus one per replay.

Rows are written in the transaction that learns of the event, and a ``NOTIFY`` on
:data:`CHANNEL` (sent at commit) wakes the delivery worker at once.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_integrations.public import PublicEvent
from pytake_integrations.tables import deliveries, endpoints

CHANNEL = "pytake_integrations_deliveries"
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', '')")


async def enqueue(
    session: AsyncSession, org: uuid.UUID, event: PublicEvent, ordering_key: str
) -> int:
    """Queue ``event`` for every enabled endpoint of ``org`` subscribed to its type."""
    return await enqueue_many(session, org, [(event, ordering_key)])


async def enqueue_many(
    session: AsyncSession, org: uuid.UUID, events: list[tuple[PublicEvent, str]]
) -> int:
    """:func:`enqueue` for several ``(event, ordering key)`` pairs of ``org`` (a consumer
    batch's): one statement finds the endpoints subscribed to any of their types, one
    queues the deliveries; an organization without endpoints costs the first only."""
    if not events:
        return 0
    types = sorted({event.type for event, _ in events})
    targets = (
        await session.execute(
            select(endpoints.c.id, endpoints.c.event_types).where(
                endpoints.c.organization_id == org,
                endpoints.c.status == "enabled",
                endpoints.c.event_types.overlap(types),
            )
        )
    ).all()
    if not targets:
        return 0
    rows = [
        _row(org, target.id, event, key, event.model_dump_json(), replay_of=None)
        for event, key in events
        for target in targets
        if event.type in target.event_types
    ]
    queued = await session.execute(
        pg_insert(deliveries)
        .values(rows)
        .on_conflict_do_nothing(
            index_elements=["endpoint_id", "event_id"], index_where=text("replay_of IS NULL")
        )
        .returning(deliveries.c.id)
    )
    count = len(queued.all())
    if count:
        await session.execute(_NOTIFY)
    return count


async def enqueue_one(
    session: AsyncSession,
    org: uuid.UUID,
    endpoint_id: uuid.UUID,
    event_id: uuid.UUID,
    event_type: str,
    body: str,
    ordering_key: str,
    *,
    replay_of: uuid.UUID | None,
) -> uuid.UUID:
    """Queue one delivery to one endpoint (a test event, or a replay of ``replay_of``)."""
    row = _row(org, endpoint_id, None, ordering_key, body, replay_of=replay_of)
    row.update(event_id=event_id, event_type=event_type)
    await session.execute(deliveries.insert().values(row))
    await session.execute(_NOTIFY)
    delivery_id: uuid.UUID = row["id"]
    return delivery_id


def _row(
    org: uuid.UUID,
    endpoint_id: uuid.UUID,
    event: PublicEvent | None,
    ordering_key: str,
    body: str,
    *,
    replay_of: uuid.UUID | None,
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "organization_id": org,
        "endpoint_id": endpoint_id,
        "event_id": event.id if event else None,
        "event_type": event.type if event else None,
        "ordering_key": ordering_key[:80],
        "body": body,
        "replay_of": replay_of,
    }
