"""The delivery queue: one row per (endpoint, public event), plus one per replay.

Rows are written in the transaction that learns of the event, and a ``NOTIFY`` on
:data:`CHANNEL` (sent at commit) wakes the delivery worker at once.

**Parked deliveries.** A delivery queued behind an earlier pending one of its endpoint
and ordering key (the conversation) is *parked*: ``next_attempt_at`` is ``infinity``, so
the worker's claim, which walks only due rows, never reads it while it waits. When the
one before it is done, the worker claims it in the same statement that writes that
outcome (:mod:`pytake_integrations.outcomes`). The two meet on a transaction-level
advisory lock per (endpoint, ordering key): queuing takes it shared before it decides to
park, writing an outcome takes it exclusively before it looks for the next delivery, so
that look always sees a delivery parked behind the finished one (without the lock, one
queued in a transaction still open then stayed parked until the sweep, ten seconds:
most of the benchmark's latency). :data:`UNPARK` (run every few seconds)
makes due any parked delivery that became the first of its conversation another way
(an endpoint disabled meanwhile, a duplicate that was not queued, a crash).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common import rawpg
from pytake_integrations.public import PublicEvent
from pytake_integrations.tables import deliveries

CHANNEL = "pytake_integrations_deliveries"
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', '')")
#: Parked behind a pending delivery of the same endpoint and ordering key, or due now.
_PARKED_OR_NOW = text(
    "SELECT CASE WHEN EXISTS (SELECT 1 FROM deliveries WHERE endpoint_id = :endpoint "
    "AND ordering_key = :key AND status = 'pending') THEN 'infinity'::timestamptz "
    "ELSE now() END"
)

#: Makes due every parked delivery that is the first pending one of its conversation
#: and not leased (the worker runs it every few seconds; see the module's docstring).
UNPARK = """
UPDATE deliveries d SET next_attempt_at = now()
WHERE d.status = 'pending' AND d.next_attempt_at = 'infinity'
  AND (d.lease_until IS NULL OR d.lease_until < now())
  AND d.seq = (
      SELECT min(p.seq) FROM deliveries p
      WHERE p.endpoint_id = d.endpoint_id AND p.ordering_key = d.ordering_key
        AND p.status = 'pending'
  )
"""


#: $1: the organization; $2..$5: the public events in order (id, type, ordering key,
#: body); $6: the channel to notify. One row per (event, enabled endpoint of the
#: organization subscribed to its type), inserted in the events' order so ``seq``
#: follows it; one behind an earlier pending delivery of its conversation is parked.
_FAN_OUT = """
WITH ev AS (
    SELECT * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[])
         WITH ORDINALITY AS ev(event_id, event_type, ordering_key, body, n)
), queued AS (
    INSERT INTO deliveries (id, organization_id, endpoint_id, event_id, event_type,
                            ordering_key, body, next_attempt_at)
    SELECT gen_random_uuid(), $1, e.id, ev.event_id, ev.event_type, ev.ordering_key, ev.body,
           CASE WHEN row_number() OVER (PARTITION BY e.id, ev.ordering_key ORDER BY ev.n) > 1
                  OR EXISTS (SELECT 1 FROM deliveries p
                             WHERE p.endpoint_id = e.id AND p.ordering_key = ev.ordering_key
                               AND p.status = 'pending')
                THEN 'infinity'::timestamptz ELSE now() END
    FROM ev
    JOIN endpoints e ON e.organization_id = $1 AND e.status = 'enabled'
                    AND ev.event_type = ANY(e.event_types)
    ORDER BY ev.n, e.id
    ON CONFLICT (endpoint_id, event_id) WHERE replay_of IS NULL DO NOTHING
    RETURNING 1
)
SELECT count(*) AS queued, CASE WHEN count(*) > 0 THEN pg_notify($6, '') END
FROM queued
"""


#: Shared locks on the (endpoint, ordering key) of every delivery the events will queue
#: ($1: organization; $2, $3: event types and ordering keys), in key order.
_LOCK_SHARED = """
SELECT count(pg_advisory_xact_lock_shared(s.k)) FROM (
    SELECT DISTINCT hashtextextended(e.id::text || '/' || ev.ordering_key, 0) AS k
    FROM unnest($2::text[], $3::text[]) AS ev(event_type, ordering_key)
    JOIN endpoints e ON e.organization_id = $1 AND e.status = 'enabled'
                    AND ev.event_type = ANY(e.event_types)
    ORDER BY 1
) s
"""

#: Exclusive locks on ($1, $2) pairs of endpoint and ordering key, in key order.
LOCK_LANES = """
SELECT count(pg_advisory_xact_lock(s.k)) FROM (
    SELECT DISTINCT hashtextextended(u.endpoint_id::text || '/' || u.ordering_key, 0) AS k
    FROM unnest($1::uuid[], $2::text[]) AS u(endpoint_id, ordering_key)
    ORDER BY 1
) s
"""


async def fan_out(
    conn: asyncpg.Connection, org: uuid.UUID, events: Sequence[tuple[PublicEvent, str]]
) -> int:
    """Queue each ``(event, ordering key)`` for every enabled endpoint of ``org``
    subscribed to its type, in one statement; the deliveries queued. ``conn``: inside
    a transaction bound to ``org``. A ``NOTIFY`` wakes the workers when it commits."""
    if not events:
        return 0
    # The hot statements (fan-out, claim, outcomes) run planned for the queue as it is: a
    # generic plan made while it was nearly empty tripled the benchmark's PostgreSQL CPU
    # per delivery in the runs where PostgreSQL kept one.
    await conn.execute(rawpg.CUSTOM_PLANS)
    types = [e.type for e, _ in events]
    keys = [key[:80] for _, key in events]
    await conn.fetchval(_LOCK_SHARED, org, types, keys)
    queued: int = await conn.fetchval(
        _FAN_OUT,
        org,
        [e.id for e, _ in events],
        types,
        keys,
        [e.model_dump_json() for e, _ in events],
        CHANNEL,
    )
    return queued


async def enqueue(
    session: AsyncSession, org: uuid.UUID, event: PublicEvent, ordering_key: str
) -> int:
    """Queue ``event`` for every enabled endpoint of ``org`` subscribed to its type."""
    return await fan_out(await rawpg.driver(session), org, [(event, ordering_key)])


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
    await session.execute(
        text("SELECT pg_advisory_xact_lock_shared(hashtextextended(:lane, 0))"),
        {"lane": f"{endpoint_id}/{row['ordering_key']}"},
    )
    due = await session.scalar(
        _PARKED_OR_NOW, {"endpoint": endpoint_id, "key": row["ordering_key"]}
    )
    row.update(event_id=event_id, event_type=event_type, next_attempt_at=due)
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
