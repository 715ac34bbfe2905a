"""Transactional outbox: events written with the domain change, relayed to Kafka.

:func:`emit` stages an event payload from the service that declares it (its
``source``) for the organization it names; :func:`add_event` inserts a built
envelope into ``outbox`` using the caller's session (same transaction as the
change) and NOTIFYs in the same statement, which PostgreSQL delivers at commit.
:class:`OutboxRelay` keeps one active relay per service (a session-level
advisory lock), wakes on LISTEN with polling as fallback, claims rows in order
with ``FOR UPDATE SKIP LOCKED``, keys each record by its aggregate id, and
backs off while the broker is down. Delivery is at-least-once; consumers dedupe.

A row no retry can publish (the broker refuses its size, it is not an event envelope)
is moved to ``outbox_dead`` with the reason, in the transaction that publishes the rest
of its batch, and counted (``pytake_outbox_dead_total``): retried with the batch, it
held back every later event of the service for good. The rest of the aggregate's events
go on without it; docs/operations.md says how to put it back once the cause is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    UnsupportedForMessageFormatError,
)
from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import CTE

from pytake_common.aio import sleep_or_stop
from pytake_common.db import Database
from pytake_common.events import CloudEvent, EventData
from pytake_common.kafka import make_producer
from pytake_common.mechanics import outbox
from pytake_common.metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_DEAD,
    OUTBOX_PUBLISH_ERRORS,
    OUTBOX_PUBLISHED,
)
from pytake_common.pgtenant import asyncpg_dsn, quote_ident
from pytake_common.rawpg import CUSTOM_PLANS, committed
from pytake_common.rawpg import driver as raw_driver
from pytake_common.rawpg import transaction as raw_transaction
from pytake_common.settings import ServiceSettings
from pytake_common.tracing import inject_headers, kafka_headers

log = logging.getLogger(__name__)
CHANNEL = "pytake_outbox"
#: How often a busy relay counts its backlog for the metric (an idle one counts every poll).
BACKLOG_INTERVAL_S = 5.0
#: What the broker (or the client, before sending) answers for a record that no retry will
#: make acceptable: too large, a topic name it rejects, a record it cannot read.
NEVER_TAKEN = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    CorruptRecordException,
    UnsupportedForMessageFormatError,
)


def outbox_row(event: CloudEvent) -> dict[str, Any]:
    """The ``outbox`` columns staging ``event`` (for callers that build their own insert,
    e.g. one merged with the change it describes; they must also ``pg_notify(CHANNEL)``)."""
    return {
        "event_id": event.id,
        "topic": event.topic,
        "key": event.subject,
        "event": event.model_dump(mode="json"),
        "headers": inject_headers(),
    }


#: ``outbox_row(event)`` staged as a data-modifying CTE that also wakes the relay (at
#: commit), to ride in the statement of the change it describes (PostgreSQL runs it even
#: unreferenced). Built once; execute with ``outbox_row(event)`` as parameters.
STAGED_EVENT: CTE = (
    insert(outbox)
    .values({name: bindparam(name) for name in ("event_id", "topic", "key", "event", "headers")})
    .returning(func.pg_notify(CHANNEL, ""))
    .cte("staged_event")
)


async def add_event(session: AsyncSession, event: CloudEvent) -> None:
    """Stage ``event`` in the caller's transaction; it is published only if that commits."""
    staged = insert(outbox).values(**outbox_row(event)).cte("staged")
    # One round trip: the insert (a data-modifying CTE always runs) and the wake-up,
    # which PostgreSQL delivers at commit (and drops if a savepoint around it rolls back).
    await session.execute(select(func.pg_notify(CHANNEL, "")).add_cte(staged))


#: Several events staged in one statement (arrays of one type whatever their number, so
#: one prepared statement), and the relay's wake-up delivered at commit.
_STAGE_MANY = """
WITH staged AS (
    INSERT INTO outbox (event_id, topic, key, event, headers)
    SELECT e.event_id, e.topic, e.key, e.event::jsonb, $5::text::jsonb
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
        WITH ORDINALITY AS e(event_id, topic, key, event, ord)
    ORDER BY e.ord
    RETURNING 1
)
SELECT pg_notify('pytake_outbox', '') WHERE EXISTS (SELECT FROM staged)
"""


assert f"pg_notify('{CHANNEL}'" in _STAGE_MANY


async def add_events(session: AsyncSession, events: Sequence[CloudEvent]) -> None:
    """Stage ``events`` in the caller's transaction in one round trip (a set-based
    handler's output), in order; published only if the transaction commits."""
    if not events:
        return
    conn = await raw_driver(session)
    await conn.execute(
        _STAGE_MANY,
        [e.id for e in events],
        [e.topic for e in events],
        [e.subject for e in events],
        [e.model_dump_json() for e in events],
        json.dumps(inject_headers()),
    )


async def emit_many(
    session: AsyncSession, payloads: Sequence[tuple[EventData, uuid.UUID | str]]
) -> list[CloudEvent]:
    """:func:`emit` for several ``(payload, subject)`` pairs: one statement, in order."""
    events = [CloudEvent.of(payload, subject=subject) for payload, subject in payloads]
    await add_events(session, events)
    return events


async def emit(
    session: AsyncSession,
    payload: EventData,
    subject: uuid.UUID | str,
    tenant_id: uuid.UUID | str | None = None,
) -> CloudEvent:
    """Stage ``payload`` about ``subject`` (its aggregate id, the Kafka key) in the caller's
    transaction. The source is the payload's own service; the tenant is the organization
    the payload names (``tenant_id`` is needed only for data naming none)."""
    event = CloudEvent.of(payload, subject=subject, tenant_id=tenant_id)
    await add_event(session, event)
    return event


class OutboxRelay:
    def __init__(
        self,
        settings: ServiceSettings,
        db: Database,
        producer_factory: Callable[[ServiceSettings], AIOKafkaProducer] = make_producer,
    ) -> None:
        self.settings = settings
        self.db = db
        self.producer_factory = producer_factory
        self.service = settings.service_name
        self.lock_key = zlib.crc32(f"pytake-outbox-{self.service}".encode())
        self._wake = asyncio.Event()
        self.active = False
        self._backlog_measured_at = 0.0
        #: whether the last batch was full: a backlog
        self._behind = False

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._run_once(stop)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                OUTBOX_PUBLISH_ERRORS.labels(self.service).inc()
                log.warning(
                    "outbox relay error, retrying", extra={"error": repr(exc), "backoff_s": backoff}
                )
                await sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 30.0)

    async def _run_once(self, stop: asyncio.Event) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(asyncpg_dsn(self.db.url))
        try:
            if self.db.app_role:  # as the Database's connections: the same privileges
                await conn.execute(f"SET ROLE {quote_ident(self.db.app_role)}")
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.lock_key):
                self.active = False
                await sleep_or_stop(stop, 2.0)  # another replica relays; stand by
                if stop.is_set():
                    return
            self.active = True
            await conn.add_listener(CHANNEL, self._on_notify)
            producer = self.producer_factory(self.settings)
            await producer.start()
            try:
                while not stop.is_set():
                    # Clear before reading: a NOTIFY for a row committed after the
                    # batch's SELECT then still wakes the next wait (clearing after
                    # publishing would lose it and leave the row for the poll).
                    self._wake.clear()
                    sent = await self.publish_batch(producer, conn)
                    if sent >= self.settings.outbox_batch_size:
                        continue
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            _first(self._wake, stop), self.settings.outbox_poll_interval_s
                        )
            finally:
                await producer.stop()
        finally:
            self.active = False
            with contextlib.suppress(Exception):
                await conn.close()

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def publish_batch(
        self, producer: AIOKafkaProducer, conn: asyncpg.Connection | None = None
    ) -> int:
        """Publish up to a batch of the outbox's oldest events; how many.

        Claimed and deleted in one statement; the delete commits only once the whole batch
        is acknowledged by the broker (any failure rolls it back, and the rows are published
        again). On raw asyncpg, and on the relay's own connection (``conn``: the one holding
        its lock and listening) when given: a batch is often one event, and a pool checkout,
        let alone a SQLAlchemy transaction, costs more CPU than publishing it."""
        if conn is None:
            async with raw_transaction(self.db) as pooled:
                return await self._publish(producer, pooled)
        async with committed(conn, "BEGIN"):
            return await self._publish(producer, conn)

    async def _publish(self, producer: AIOKafkaProducer, conn: asyncpg.Connection) -> int:
        """A batch inside ``conn``'s transaction (JSON columns decoded or not: the relay's
        own connection has no codec for them, SQLAlchemy's pool connections do)."""
        if self._behind:
            # A backlog (the last batch was full): planned for the outbox as it is now, by
            # index, not by the plan kept from the empty outbox (a scan of it a batch).
            await conn.execute(CUSTOM_PLANS)
        taken = await conn.fetch(CLAIM_SQL, self.settings.outbox_batch_size)
        self._behind = len(taken) >= self.settings.outbox_batch_size
        rows = sorted(taken, key=lambda row: row["id"])  # RETURNING has no order
        if rows:
            dead = await self._send(producer, rows)
            if dead:
                await self._set_aside(conn, dead)
            for row in rows:
                if row["id"] not in dead:
                    OUTBOX_PUBLISHED.labels(self.service, row["topic"]).inc()
        now = time.monotonic()
        if now - self._backlog_measured_at >= BACKLOG_INTERVAL_S or not rows:
            self._backlog_measured_at = now
            backlog = await conn.fetchval("SELECT count(*) FROM outbox")
            OUTBOX_BACKLOG.labels(self.service).set(backlog)
        return len(rows)

    async def _send(
        self, producer: AIOKafkaProducer, rows: list[asyncpg.Record]
    ) -> dict[int, tuple[asyncpg.Record, str]]:
        """Send ``rows`` and wait for the broker; those it can never take, by id, with why.

        Any other failure raises: the batch is rolled back and claimed again. The broker
        refuses a whole request for one record too large, so the records of a refused
        request are sent again one by one to find which."""
        dead: dict[int, tuple[asyncpg.Record, str]] = {}
        sent: list[tuple[asyncpg.Record, bytes, asyncio.Future[Any]]] = []
        for row in rows:
            try:
                value = _envelope(row["event"]).to_bytes()
            except ValueError as exc:  # pydantic's ValidationError, JSON's errors
                dead[row["id"]] = (row, f"not an event envelope: {exc}")
                continue
            try:
                sent.append((row, value, await self._produce(producer, row, value)))
            except NEVER_TAKEN as exc:  # the client's own checks (its size limit)
                dead[row["id"]] = (row, _reason(exc))
        outcomes = await asyncio.gather(*(f for _, _, f in sent), return_exceptions=True)
        refused = []
        for (row, value, _), outcome in zip(sent, outcomes, strict=True):
            if isinstance(outcome, NEVER_TAKEN):
                refused.append((row, value))
            elif isinstance(outcome, BaseException):
                raise outcome
        for row, value in refused:
            try:
                await (await self._produce(producer, row, value))
            except NEVER_TAKEN as exc:
                dead[row["id"]] = (row, _reason(exc))
        return dead

    @staticmethod
    async def _produce(
        producer: AIOKafkaProducer, row: asyncpg.Record, value: bytes
    ) -> asyncio.Future[Any]:
        acknowledged: asyncio.Future[Any] = await producer.send(
            row["topic"],
            value=value,
            key=row["key"].encode(),
            headers=kafka_headers(_json(row["headers"]) or {}),
        )
        return acknowledged

    async def _set_aside(
        self, conn: asyncpg.Connection, dead: dict[int, tuple[asyncpg.Record, str]]
    ) -> None:
        """Move ``dead`` (already deleted from the outbox by the claim) to ``outbox_dead``."""
        rows = [row for row, _ in dead.values()]
        await conn.execute(
            SET_ASIDE_SQL,
            [row["id"] for row in rows],
            [row["event_id"] for row in rows],
            [row["topic"] for row in rows],
            [row["key"] for row in rows],
            [_text(row["event"]) for row in rows],
            [_text(row["headers"]) for row in rows],
            [row["created_at"] for row in rows],
            [reason[:1000] for _, reason in dead.values()],
        )
        for row, reason in dead.values():
            OUTBOX_DEAD.labels(self.service, row["topic"]).inc()
            log.error(
                "outbox event set aside: the broker can never take it",
                extra={
                    "event_id": str(row["event_id"]),
                    "topic": row["topic"],
                    "outbox_id": row["id"],
                    "reason": reason,
                },
            )


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _text(column: str | dict[str, Any] | None) -> str | None:
    return column if column is None or isinstance(column, str) else json.dumps(column)


def _envelope(column: str | dict[str, Any]) -> CloudEvent:
    if isinstance(column, str):
        return CloudEvent.model_validate_json(column)
    return CloudEvent.model_validate(column)


def _json(column: str | dict[str, Any] | None) -> Any:
    return json.loads(column) if isinstance(column, str) else column


#: Claims (in id order, skipping rows another relay holds) and deletes up to ``$1`` rows.
#: The claim runs once (an InitPlan, its ids an array): with ``id IN (claim)``, the plan
#: PostgreSQL keeps from an outbox that is empty at almost every poll scanned the table
#: and ran the claim again for each row (a backlog of N rows: N sorts of N rows a batch).
CLAIM_SQL = """
DELETE FROM outbox WHERE id = ANY(ARRAY(
    SELECT id FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
))
RETURNING id, event_id, topic, key, event, headers, created_at
"""

#: Rows the relay claimed (and so deleted) that the broker can never take, with why.
SET_ASIDE_SQL = """
INSERT INTO outbox_dead (id, event_id, topic, key, event, headers, created_at, reason)
SELECT d.id, d.event_id, d.topic, d.key, d.event::jsonb, coalesce(d.headers::jsonb, '{}'),
       d.created_at, d.reason
FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::timestamptz[], $8::text[])
    AS d(id, event_id, topic, key, event, headers, created_at, reason)
"""


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
