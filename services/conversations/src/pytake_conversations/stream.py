"""The realtime stream: per-organization events stored in ``stream_events``, fanned out
to every replica's WebSockets through PostgreSQL ``LISTEN/NOTIFY``.

:func:`publish` writes the event row and a ``NOTIFY`` in the caller's transaction, so a
frame exists exactly when the change it describes committed. The payload is
``<org>:<id>:<frame JSON>``, or just ``<org>:<id>`` when the frame would not fit in a
notification. Each replica runs one :class:`StreamHub`: a dedicated connection LISTENs
and hands each frame to the local subscribers of that organization, reading the row
only when the frame did not come with the notification (no transaction per event on
the realtime path). A client that reconnects with ``last_event_id`` gets the missed rows
replayed from the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy import Select, Text, bindparam, case, cast, delete, func, select
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import CTE

from pytake_common import rawpg
from pytake_common.db import Database
from pytake_common.pgtenant import asyncpg_dsn
from pytake_conversations.tables import stream_events

log = logging.getLogger(__name__)
CHANNEL = "pytake_conversations_stream"
#: How long missed events can be replayed after a reconnect.
RETENTION = timedelta(hours=24)
REPLAY_LIMIT = 5000
QUEUE_SIZE = 1000
#: PostgreSQL refuses notification payloads of 8000 bytes or more; bigger frames are
#: announced by id only and read from the table.
NOTIFY_MAX_BYTES = 7900


async def publish(session: AsyncSession, org: uuid.UUID, type_: str, data: dict[str, Any]) -> int:
    """Record a stream event in the caller's transaction; delivered when it commits."""
    [event_id] = await publish_many(session, org, [(type_, data)])
    return event_id


async def publish_many(
    session: AsyncSession,
    org: uuid.UUID,
    frames: Sequence[tuple[str, dict[str, Any]]],
    *,
    with_: Sequence[tuple[CTE, Mapping[str, Any]]] = (),
) -> list[int]:
    """Record ``frames`` (type, data) in order and NOTIFY each: ONE statement.

    The notification is built by PostgreSQL from the inserted row (the id is only known
    there). ``with_`` are other writes of the caller's change, each a data-modifying CTE
    built once with bound parameters and its parameters (e.g. ``outbox.STAGED_EVENT``),
    that ride in the same round trip.
    """
    return await publish_json(
        session, org, [(t, json.dumps(d, separators=(",", ":"))) for t, d in frames], with_=with_
    )


async def publish_json(
    session: AsyncSession,
    org: uuid.UUID,
    frames: Sequence[tuple[str, str]],
    *,
    with_: Sequence[tuple[CTE, Mapping[str, Any]]] = (),
) -> list[int]:
    """:func:`publish_many` of frames whose data is JSON text already (a set-based
    handler's, written without building models). Without ``with_``, straight on the
    driver: one prepared statement whatever the number of frames."""
    if not with_:
        conn = await rawpg.driver(session)
        rows = await conn.fetch(
            _PUBLISH, org, [t for t, _ in frames], [d for _, d in frames], NOTIFY_MAX_BYTES
        )
        return [int(r[0]) for r in rows]
    params: dict[str, Any] = {
        "org": org,
        "types": [t for t, _ in frames],
        "datas": [d for _, d in frames],
    }
    for _, values in with_:
        params.update(values)
    statement = _publish_statement(tuple(cte for cte, _ in with_))
    return [int(i) for i in (await session.execute(statement, params)).scalars()]


#: The frames as rows of arrays (one statement text for any number of frames, so one
#: prepared statement): ids in the frames' order (the sort runs before the identity's
#: nextval), and each one's notification.
_PUBLISH = """
WITH new_frames AS (
    INSERT INTO stream_events (organization_id, type, data)
    SELECT $1, f.type, f.data::jsonb
    FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS f(type, data, ord)
    ORDER BY f.ord
    RETURNING id, organization_id, type, data
), payloads AS (
    SELECT id, concat(organization_id, ':', id) AS head,
           concat(organization_id, ':', id, ':',
                  json_build_object('id', id, 'type', type, 'data', data)) AS full_payload
    FROM new_frames
)
SELECT id, pg_notify('pytake_conversations_stream',
                     CASE WHEN octet_length(full_payload) < $4 THEN full_payload ELSE head END)
FROM payloads ORDER BY id
"""
assert f"pg_notify('{CHANNEL}'" in _PUBLISH


@functools.cache
def _publish_statement(with_: tuple[CTE, ...]) -> Select[Any]:
    """``_PUBLISH`` with other writes riding along (built once per set of them)."""
    rows = (
        func.unnest(
            bindparam("types", type_=ARRAY(Text())), bindparam("datas", type_=ARRAY(Text()))
        )
        .table_valued("type", "data", with_ordinality="ord")
        .render_derived()
    )
    new = (
        stream_events.insert()
        .from_select(
            ["organization_id", "type", "data"],
            select(
                bindparam("org", type_=stream_events.c.organization_id.type),
                rows.c.type,
                cast(rows.c.data, JSONB),
            ).order_by(rows.c.ord),
        )
        .returning(
            stream_events.c.id,
            stream_events.c.organization_id,
            stream_events.c.type,
            stream_events.c.data,
        )
        .cte("new_frames")
    )
    head = func.concat(new.c.organization_id, ":", new.c.id)
    full = func.concat(
        head,
        ":",
        func.json_build_object("id", new.c.id, "type", new.c.type, "data", new.c.data),
    )
    payload = case((func.octet_length(full) < NOTIFY_MAX_BYTES, full), else_=head)
    statement = select(new.c.id, func.pg_notify(CHANNEL, payload)).order_by(new.c.id)
    for cte in with_:
        statement = statement.add_cte(cte)
    return statement


def parse_payload(
    payload: str, wanted: Container[uuid.UUID] | None = None
) -> tuple[uuid.UUID, int, dict[str, Any] | None] | None:
    """``(org, event id, frame or None)`` of a notification; None if malformed, or if
    its organization is not ``wanted`` (checked before the frame is decoded)."""
    org, _, rest = payload.partition(":")
    event_id, _, body = rest.partition(":")
    try:
        org_id = uuid.UUID(org)
        if wanted is not None and org_id not in wanted:
            return None
        message = json.loads(body) if body else None
        parsed = (org_id, int(event_id), message)
    except ValueError:
        return None
    if message is not None and (not isinstance(message, dict) or message.get("id") != parsed[1]):
        return None
    return parsed


def frame(row: Any) -> dict[str, Any]:
    return {"id": int(row.id), "type": row.type, "data": row.data}


async def replay(db: Database, org: uuid.UUID, after: int) -> list[dict[str, Any]]:
    """The organization's events after ``after`` still kept, oldest first."""
    async with db.transaction(organization_id=org) as session:
        rows = (
            await session.execute(
                select(stream_events.c.id, stream_events.c.type, stream_events.c.data)
                .where(
                    stream_events.c.organization_id == org,
                    stream_events.c.id > after,
                    stream_events.c.created_at > func.now() - RETENTION,
                )
                .order_by(stream_events.c.id)
                .limit(REPLAY_LIMIT)
            )
        ).all()
    return [frame(r) for r in rows]


async def latest_id(db: Database, org: uuid.UUID) -> int:
    async with db.transaction(organization_id=org) as session:
        value = await session.scalar(
            select(func.max(stream_events.c.id)).where(stream_events.c.organization_id == org)
        )
    return int(value or 0)


async def prune(db: Database) -> int:
    """Forget events older than the replay window (run periodically by the maintenance worker)."""
    async with db.transaction(bypass_rls=True) as session:
        result = await session.execute(
            delete(stream_events).where(stream_events.c.created_at < func.now() - RETENTION)
        )
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(eq=False)
class Subscription:
    organization_id: uuid.UUID
    queue: asyncio.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )
    #: set when the subscriber fell too far behind; it must reconnect and resume
    overflowed: bool = False


class StreamHub:
    """This replica's fan-out of stream events to its local WebSocket subscribers."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._subs: dict[uuid.UUID, set[Subscription]] = defaultdict(set)
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._pending: asyncio.Queue[tuple[uuid.UUID, int, dict[str, Any] | None]] = asyncio.Queue()
        self._stopping = False

    async def start(self) -> None:
        """Start listening (idempotent); returns once LISTEN is in place."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._resume_all()  # even a full queue closes: its socket resumes from the table

    def subscribe(self, org: uuid.UUID) -> Subscription:
        sub = Subscription(org)
        self._subs[org].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.organization_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.organization_id]

    def subscribers(self, org: uuid.UUID) -> int:
        return len(self._subs.get(org, ()))

    async def _run(self) -> None:
        backoff = 0.2
        listened = False
        while not self._stopping:
            reader = None
            try:
                self._conn = await asyncpg.connect(asyncpg_dsn(self.db.url))
                await self._conn.add_listener(CHANNEL, self._on_notify)
                if listened and (resumed := self._resume_all()):
                    log.warning(
                        "stream hub listening again: subscribers resume", extra={"n": resumed}
                    )
                listened = True
                self._ready.set()
                backoff = 0.2
                reader = asyncio.create_task(self._read_loop())
                await self._closed(self._conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("stream hub connection lost", extra={"error": repr(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                if reader is not None:
                    reader.cancel()
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        await self._conn.close()
                    self._conn = None

    def _resume_all(self) -> int:
        """Every subscriber resumes from the table (``last_event_id``); how many. When the
        hub stops, and once LISTEN is back after a loss (PostgreSQL restarted, the
        connection dropped): a NOTIFY is not kept for a listener that is away, and this
        also covers those who subscribed meanwhile."""
        resumed = 0
        for subs in self._subs.values():
            for sub in subs:
                _tell_to_resume(sub)
                resumed += 1
        return resumed

    @staticmethod
    async def _closed(conn: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        if not conn.is_closed():
            await lost.wait()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        parsed = parse_payload(payload, wanted=self._subs)  # nobody here listens: skip it
        if parsed is not None:
            self._pending.put_nowait(parsed)

    async def _read_loop(self) -> None:
        while True:
            org, first, message = await self._pending.get()
            batch = {first: message}
            while not self._pending.empty() and len(batch) < 500:
                other_org, other, other_message = self._pending.get_nowait()
                if other_org != org:
                    await self._deliver(other_org, {other: other_message})
                    continue
                batch[other] = other_message
            await self._deliver(org, batch)

    async def _deliver(self, org: uuid.UUID, batch: dict[int, dict[str, Any] | None]) -> None:
        if org not in self._subs:
            return
        frames = {i: m for i, m in batch.items() if m is not None}
        missing = [i for i, m in batch.items() if m is None]
        if missing:  # too big for a notification: read from the table
            try:
                async with self.db.transaction(organization_id=org) as session:
                    rows = (
                        await session.execute(
                            select(
                                stream_events.c.id, stream_events.c.type, stream_events.c.data
                            ).where(
                                stream_events.c.organization_id == org,
                                stream_events.c.id.in_(missing),
                            )
                        )
                    ).all()
            except Exception as exc:
                log.warning("stream hub could not read events", extra={"error": repr(exc)})
                return
            frames.update((int(row.id), frame(row)) for row in rows)
        for _, message in sorted(frames.items()):
            for sub in list(self._subs.get(org, ())):
                try:
                    sub.queue.put_nowait(message)
                except asyncio.QueueFull:
                    _tell_to_resume(sub)


def _tell_to_resume(sub: Subscription) -> None:
    """The subscriber's socket closes with "resume with last_event_id" (it missed frames)."""
    sub.overflowed = True
    while True:
        try:
            sub.queue.put_nowait(None)
            return
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                sub.queue.get_nowait()


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), default=str)
