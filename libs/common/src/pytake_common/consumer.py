"""Idempotent consumer (inbox): each event handled once per consumer group.

Records come in batches (``getmany``, up to ``consumer_batch_size``; while records
stream in, the consumer lingers ``consumer_linger_ms`` for more) and a batch is
handled in ONE database transaction: its inbox marks ``(group, event id)`` are
inserted first into ``processed_events`` in one statement (``ON CONFLICT DO
NOTHING``: a record whose mark exists is a duplicate and is skipped), then each
record's handler runs with the transaction bound to that record's organization
(row-level security). Offsets are committed to Kafka only after the database
commit, so a crash in between redelivers records the marks then skip.

A record whose handler fails is isolated: the batch's first try runs without
savepoints (one round trip less per record), so its transaction rolls back whole
and the records before the failed one are handled again, each in its own
savepoint; the records before it commit, the marks of the records not handled yet
are removed, and the failed record is retried alone (one transaction per attempt)
with backoff; after
``consumer_max_attempts`` (or at once for a malformed record or a
:class:`PermanentError`) it goes to ``<topic>.dlq`` with the reason in its
headers. Then the rest of the batch goes on, in order. If the batch transaction
itself fails (connection lost, commit refused), its records are handled one by
one the same way.

A :class:`SetHandler` takes all records of its type and organization in a batch at
once, before the batch's other records: one transaction per organization with the
marks in one statement and each type's changes in a few. A record whose data does
not parse is handled alone; if that transaction fails, each of its records is
handled alone as above.

An ``ordered`` :class:`SetHandler` keeps the batch's order instead: each run of
consecutive records it takes (of any of its types) is one call per organization, at
the run's place in the batch and in its transaction (the marks of the whole batch in
one statement), so the records before and after it, of other handlers, see its effect
as they would one by one. If the call fails, its records are handled alone as above.

The transaction is the kit's own, on the raw asyncpg connection of a pool checkout:
``BEGIN``, the organization's binding and the inbox marks go in one round trip (the
insert's count says whether all records are fresh; only a redelivery costs a statement
more), ``COMMIT`` in another. The :class:`AsyncSession` a handler gets is bound to that
connection and joins the transaction when it first runs a statement (SQLAlchemy's
asyncpg adapter is told a transaction is open); :func:`pytake_common.rawpg.driver` hands a
handler the connection without beginning the session. A handler must not end the
transaction (``session.commit()`` raises; after a ``session.rollback()`` the records fail).
While :meth:`EventConsumer.run` runs, its pool connection stays checked out between
transactions (:meth:`EventConsumer.holding`).

A record whose type no handler takes is skipped before its JSON is parsed (the type is
read from the envelope's bytes when they are :meth:`CloudEvent.to_bytes`'s): another
consumer's event on a shared topic costs no validation and no database work.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from pytake_common import rawpg
from pytake_common.context import organization_id_var
from pytake_common.db import Database, RawTransaction
from pytake_common.events import CloudEvent
from pytake_common.kafka import make_consumer, make_producer
from pytake_common.metrics import CONSUMER_LAG, EVENTS_CONSUMED, EVENTS_DEAD_LETTERED
from pytake_common.pgtenant import abandon, begin_sql, discard, quote_literal, rebind_sql
from pytake_common.settings import ServiceSettings
from pytake_common.tracing import context_from_kafka, tracer

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]
_Row = TypeVar("_Row", bound=BaseModel)

#: The savepoint each record of a batch runs in (one name: they never nest).
_SAVEPOINT = "pytake_record"
#: Which of a batch's marks this transaction inserted, when some were there before (a
#: redelivery): the rows whose creating transaction is this one.
_MARKED_NOW = (
    "SELECT event_id FROM processed_events WHERE consumer_group = $1"
    " AND event_id = ANY($2::uuid[]) AND xmin = pg_current_xact_id()::xid"
)
#: Removes the marks of records a failed batch did not handle.
_UNMARK = "DELETE FROM processed_events WHERE consumer_group = $1 AND event_id = ANY($2::uuid[])"


#: How long a running consumer keeps its pool connection without records to handle.
HOLD_IDLE_S = 10.0

#: The waits between two tries of a record while PostgreSQL is unavailable: doubling
#: from twice the first, up to the longest.
OUTAGE_FIRST_WAIT_S = 0.2
OUTAGE_MAX_WAIT_S = 5.0


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says PostgreSQL could not be reached or went
    away (a connection refused, reset or closed mid-statement, a server starting up or
    shutting down), rather than that the record or its handler is wrong."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current,
            OSError
            | asyncpg.exceptions.PostgresConnectionError
            | asyncpg.exceptions.ConnectionDoesNotExistError
            | asyncpg.exceptions.CannotConnectNowError
            | asyncpg.exceptions.AdminShutdownError
            | asyncpg.exceptions.CrashShutdownError,
        ):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        # asyncpg's own word for a connection the server closed before the statement (as
        # SQLAlchemy's asyncpg dialect reads it): a raw statement's, e.g. a kept connection's
        if isinstance(current, asyncpg.InterfaceError) and "connection is closed" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


class PermanentError(Exception):
    """A record that can never succeed: dead-letter it without retrying."""


class SetHandler(Generic[_Row]):
    """A handler that may take every record of its type and organization in a batch at once.

    ``apply(session, rows)`` gets the parsed data (``model``) of the batch's fresh records
    of one organization, the session bound to it, and applies them in a few statements
    (multi-row upserts, ``unnest``); the records' inbox marks are written in one
    statement before it. Records of a set-based type are not ordered relative to the
    batch's other records, so ``apply`` must give the same result however records are
    grouped (counting, idempotent upserts). One record alone goes through the same
    ``apply`` as a set of one: the per-record path (retries, dead-lettering) stays.

    One instance registered for several event types gets their records together, in
    the batch's order (``parse``, default ``event.parse_data(model)``, reads each one,
    e.g. by its type's own model): for facts whose order across types matters.

    ``ordered``: the records are NOT taken out of the batch's order. Each run of
    consecutive records this handler takes is applied where it stands, one call per
    organization of the run (an organization's records in their order), inside the
    batch's transaction between the records before and after it; ``apply`` may then
    depend on order (a replica that other handlers' records also move). ``order`` does
    not apply.
    """

    def __init__(
        self,
        model: type[_Row],
        apply: Callable[[AsyncSession, list[_Row]], Awaitable[None]],
        *,
        order: int = 0,
        parse: Callable[[CloudEvent], _Row] | None = None,
        ordered: bool = False,
    ) -> None:
        self.model = model
        self.apply = apply
        #: Within an organization's set, handlers apply in ascending ``order`` (then as
        #: their records first came): one whose effect builds on another's comes after it.
        self.order = order
        self.ordered = ordered
        self._parse = parse

    def parse(self, event: CloudEvent) -> _Row:
        if self._parse is not None:
            return self._parse(event)
        return event.parse_data(self.model)

    async def __call__(self, session: AsyncSession, event: CloudEvent) -> None:
        await self.apply(session, [self.parse(event)])


@dataclass(slots=True)
class _Item:
    record: ConsumerRecord[Any, Any]
    event: CloudEvent
    handler: Handler


@dataclass(slots=True)
class _Run:
    """Consecutive records of one organization an ordered :class:`SetHandler` takes,
    with their parsed data: one call of its ``apply``."""

    handler: SetHandler[Any]
    tenant: str
    items: list[_Item]
    rows: list[Any]


#: What a batch transaction handles in order: a record, or an ordered handler's run.
_Unit = _Item | _Run
#: A unit that failed in a batch: the records to handle alone, and the error to count as
#: the first attempt (a record's own failure; None for a run: whose fault is unknown).
_Failure = tuple[list[_Item], Exception | None]

#: The start of every envelope :meth:`CloudEvent.to_bytes` writes (its fields in
#: declaration order: ``specversion``, ``id``, ``source``, ``type``, ...).
_ENVELOPE = b'{"specversion":"1.0","id":"'
_TYPE_KEY = b'","type":"'


def envelope_type(value: bytes | None) -> str | None:
    """The event type of a record written by :meth:`CloudEvent.to_bytes`, read from its
    bytes without parsing them; None when they are laid out otherwise (then the record
    is parsed whole). Inside a JSON string every ``"`` is escaped, so the first
    ``","type":"`` after the id is the envelope's key, before ``data``."""
    if not value or not value.startswith(_ENVELOPE):
        return None
    start = value.find(_TYPE_KEY, len(_ENVELOPE))
    if start < 0:
        return None
    start += len(_TYPE_KEY)
    end = value.find(b'"', start)
    if end < 0 or value.find(b"\\", start, end) >= 0:
        return None
    return value[start:end].decode()


class _Failed(Exception):
    """A batch's only fresh record failed: the whole transaction rolls back."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


def _records(units: Sequence[_Unit]) -> list[_Item]:
    """The records of ``units``, in order."""
    out: list[_Item] = []
    for unit in units:
        if isinstance(unit, _Run):
            out.extend(unit.items)
        else:
            out.append(unit)
    return out


def _tenant(unit: _Unit) -> str:
    return unit.tenant if isinstance(unit, _Run) else unit.event.tenantid


def _failure(unit: _Unit, error: Exception) -> _Failure:
    """A failed unit's records to handle alone: a record with its failure as its first
    attempt; a run's records each from scratch (which one failed is not known)."""
    if isinstance(unit, _Run):
        return list(unit.items), None
    return [unit], error


def _unordered_set(handler: Handler) -> bool:
    return isinstance(handler, SetHandler) and not handler.ordered


class _Begun(RawTransaction):
    """The consumer's transaction as SQLAlchemy's asyncpg adapter sees it (so a session's
    statements join it instead of beginning one). Only the consumer commits it; a
    handler's ``session.rollback()`` rolls it back, and the consumer then fails the records
    instead of committing what came after."""

    __slots__ = ("rolled_back",)

    def __init__(self, conn: asyncpg.Connection) -> None:
        super().__init__(conn)
        self.rolled_back = False

    async def commit(self) -> None:
        raise RuntimeError("a consumer's transaction is committed by the consumer, not a handler")

    async def rollback(self) -> None:
        self.rolled_back = True
        await super().rollback()


def _begin(tenant: str) -> str:
    """``BEGIN`` bound to ``tenant`` (row-level security applies) as one simple query."""
    try:
        return begin_sql(tenant)
    except ValueError:  # not a UUID: bound as the text it is, as a session would
        return f"{begin_sql(None)}; {rebind_sql(tenant)}"


def _marks_sql(group: str, rows: Mapping[uuid.UUID, str]) -> str:
    """The inbox marks of ``rows`` (event id: type) as one simple statement, to ride in
    ``BEGIN``'s round trip: ids are UUIDs, the other values quoted."""
    values = ", ".join(
        f"('{event_id}'::uuid, {quote_literal(etype)})" for event_id, etype in rows.items()
    )
    return (
        "INSERT INTO processed_events (consumer_group, event_id, event_type) "  # noqa: S608
        f"SELECT {quote_literal(group)}, v.event_id, v.event_type FROM (VALUES {values}) "
        "AS v(event_id, event_type) ON CONFLICT DO NOTHING"
    )


@dataclass(slots=True)
class _Tx:
    """A consumer transaction: its raw connection, the session handlers get (on the same
    connection and transaction), and the ids of its records not marked before it."""

    conn: asyncpg.Connection
    session: AsyncSession
    fresh: set[uuid.UUID]


class EventConsumer:
    def __init__(
        self,
        settings: ServiceSettings,
        db: Database,
        group: str,
        handlers: Mapping[str, Handler],
    ) -> None:
        self.settings = settings
        self.db = db
        self.group = group
        self.handlers = dict(handlers)
        self.topics = sorted({t.rsplit(".", 2)[0] for t in self.handlers})
        self.service = settings.service_name
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq: AIOKafkaProducer | None = None
        self.ready = asyncio.Event()
        #: when the last fetch that brought records returned (monotonic seconds)
        self._records_at = float("-inf")
        #: The pool connection kept between transactions (see :meth:`holding`): a checkout
        #: and check-in cost more CPU than a transaction's round trips.
        self._holding = False
        self._held: tuple[AsyncConnection, Any] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._run_once(stop)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "consumer error, restarting", extra={"group": self.group, "error": repr(exc)}
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _run_once(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(self.settings, self.group, self.topics)
        self._consumer = consumer
        await consumer.start()
        try:
            async with self.holding():
                while not stop.is_set():
                    self.ready.set()
                    batches = await self._fetch(consumer)
                    if not batches:
                        if time.monotonic() - self._records_at > HOLD_IDLE_S:
                            await self._release()  # idle: the connection goes back
                        continue
                    await self.process_batch([r for rs in batches.values() for r in rs])
                    await self.commit(
                        {tp: OffsetAndMetadata(rs[-1].offset + 1, "") for tp, rs in batches.items()}
                    )
                    for tp, records in batches.items():
                        hw = consumer.highwater(tp)
                        if hw is not None:
                            CONSUMER_LAG.labels(
                                self.service, self.group, tp.topic, tp.partition
                            ).set(max(hw - records[-1].offset - 1, 0))
        finally:
            await self.close()

    @asynccontextmanager
    async def holding(self) -> AsyncIterator[None]:
        """Inside the block (:meth:`run`'s loop), one pool connection stays checked out
        between transactions; it is given back at the end (and meanwhile whenever a
        transaction fails or the loop finds no records for :data:`HOLD_IDLE_S`)."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            await self._release()

    async def _fetch(
        self, consumer: AIOKafkaConsumer
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        """The next batch: what the broker has (waiting up to 250 ms for a first record),
        plus, while records stream in, what arrives within the linger (see
        ``consumer_linger_ms``); at most ``consumer_batch_size`` records."""
        size = max(self.settings.consumer_batch_size, 1)
        batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]
        batches = await consumer.getmany(timeout_ms=250, max_records=size)
        if not batches:
            return batches
        now = time.monotonic()
        streaming = now - self._records_at < self.settings.consumer_linger_after_ms / 1000
        self._records_at = now
        linger = self.settings.consumer_linger_ms / 1000
        if not streaming or linger <= 0:
            return batches
        count = sum(len(records) for records in batches.values())
        deadline = now + linger
        while count < size and (left := deadline - time.monotonic()) > 0:
            more = await consumer.getmany(
                timeout_ms=max(int(left * 1000), 1), max_records=size - count
            )
            for tp, records in more.items():
                batches.setdefault(tp, []).extend(records)
                count += len(records)
        return batches

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """Commit offsets after the records' database transactions committed."""
        assert self._consumer is not None
        await self._consumer.commit(offsets)

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._dlq is not None:
            await self._dlq.stop()
            self._dlq = None

    # --- the transaction ---------------------------------------------------------------

    @asynccontextmanager
    async def _transaction(self, tenant: str, items: list[_Item]) -> AsyncIterator[_Tx]:
        """One transaction bound to ``tenant`` with the inbox marks of ``items``, committed
        when the block ends; rolled back when it raises (a connection left in a state not
        known, e.g. cancelled mid-statement, is closed instead of going back to the pool).

        It runs on the raw asyncpg connection of a pool checkout: ``BEGIN``, the binding and
        the marks are one round trip (the fresh ids come from the insert's count; only when
        some marks existed, a redelivery, a second statement says which), ``COMMIT``
        another. The handlers' :class:`AsyncSession` is bound to the same connection and
        joins that transaction when it first runs a statement; a handler on the raw
        connection (:func:`pytake_common.rawpg.driver`) never begins the session at all.
        """
        rows = {item.event.id: item.event.type for item in items}
        held, self._held = self._held, None  # in use: a concurrent caller checks one out
        if held is not None and not await rawpg.alive(*held):  # closed while kept
            await held[0].close()
            held = None
        pooled, proxied = held or await self._checkout()
        conn: asyncpg.Connection = proxied.driver_connection
        adapted: Any = proxied.dbapi_connection
        session = AsyncSession(bind=pooled, expire_on_commit=False)
        session.info["organization_id"] = tenant
        session.info["bypass_rls"] = False
        session.info[rawpg.DRIVER] = conn
        committed = reusable = False
        begun: _Begun | None = None
        try:
            status = await conn.execute(f"{_begin(tenant)}; {_marks_sql(self.group, rows)}")
            adapted._transaction = begun = _Begun(conn)
            inserted = int(status.rsplit(" ", 1)[1])
            if inserted == len(rows):
                fresh = set(rows)
            elif inserted == 0:
                fresh = set()
            else:
                fresh = {r[0] for r in await conn.fetch(_MARKED_NOW, self.group, list(rows))}
            yield _Tx(conn, session, fresh)
            if session.new or session.dirty or session.deleted:
                await session.flush()
            if begun.rolled_back:
                raise rawpg.RolledBack("a handler rolled the consumer's transaction back")
            # A statement that failed inside the block (its error caught there) left the
            # transaction aborted: COMMIT then rolls back, and says so in its tag.
            if await conn.execute("COMMIT") != "COMMIT":
                raise rawpg.RolledBack("the transaction had failed: it was rolled back")
            committed = True
        finally:
            adapted._transaction = None  # ended here: SQLAlchemy has nothing left to end
            try:
                forget = partial(proxied.invalidate, soft=True)
                if begun is not None and begun.rolled_back:
                    # SQLAlchemy may have begun a transaction of its own on it since:
                    # not a connection to reason about
                    discard(conn, forget)
                elif not committed:
                    await abandon(conn, forget)
                if session.in_transaction():
                    await session.close()
                reusable = committed and self._holding and self._held is None
            finally:
                if reusable and not pooled.in_transaction():
                    self._held = pooled, proxied
                else:
                    await pooled.close()

    async def _checkout(self) -> tuple[AsyncConnection, Any]:
        return await rawpg.checkout(self.db)

    async def _release(self) -> None:
        """Give the connection kept between transactions back to the pool."""
        held, self._held = self._held, None
        if held is not None:
            await held[0].close()

    # --- decoding --------------------------------------------------------------------

    async def _decode(self, record: ConsumerRecord[Any, Any]) -> _Item | None:
        """The record's event and handler; None when it is not ours (or dead-lettered)."""
        etype = envelope_type(record.value)
        if etype is not None and etype not in self.handlers:
            return None  # another consumer's event on a shared topic: not even parsed
        try:
            event = CloudEvent.model_validate_json(record.value)
        except ValidationError as exc:
            await self.dead_letter(record, f"undecodable record: {exc.error_count()} errors")
            return None
        handler = self.handlers.get(event.type)
        if handler is None:
            return None  # another consumer's event on a shared topic
        return _Item(record, event, handler)

    def _counted(self, event: CloudEvent, outcome: str) -> None:
        """Called once per record and outcome (``handled``/``duplicate``), after its commit."""
        EVENTS_CONSUMED.labels(self.service, self.group, event.type, outcome).inc()

    # --- batches ---------------------------------------------------------------------

    async def process_batch(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        """Handle ``records`` in order, as few transactions as their failures allow."""
        items = [item for record in records if (item := await self._decode(record)) is not None]
        sets, items = self._take_sets(items)
        if sets:
            await self._process_sets(sets)
        if items:
            await self._process_items(await self._runs(items), savepoints=False)

    async def _runs(self, items: list[_Item]) -> list[_Unit]:
        """``items`` in order, each run of consecutive records of one ordered
        :class:`SetHandler` made one unit per organization (an organization's records in
        their order; organizations' runs are independent). A record whose data does not
        parse is handled alone (dead-lettered: at once when it does not validate, after its
        attempts when ``parse`` fails otherwise), never failing the batch."""
        units: list[_Unit] = []
        current: SetHandler[Any] | None = None
        runs: dict[str, _Run] = {}
        for item in items:
            handler = item.handler
            if not (isinstance(handler, SetHandler) and handler.ordered):
                current = None
                units.append(item)
                continue
            try:
                row = handler.parse(item.event)
            except Exception:  # its own path: dead-lettered (at once when malformed)
                await self._process_item(item)
                continue
            if handler is not current:
                current, runs = handler, {}
            run = runs.get(item.event.tenantid)
            if run is None:
                run = runs[item.event.tenantid] = _Run(handler, item.event.tenantid, [], [])
                units.append(run)
            run.items.append(item)
            run.rows.append(row)
        return units

    async def _process_items(self, items: list[_Unit], *, savepoints: bool) -> None:
        """``items`` in order: in one transaction while none fails.

        The first try runs the records without savepoints (a round trip less per
        record); when one fails, that transaction rolled back whole, so the records
        before it are handled again, each in a savepoint this time, the failed one
        goes on alone (its failure was its first attempt), then the rest."""
        while items:
            try:
                failed, redo, items = await self._handle_batch(items, savepoints=savepoints)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Nothing of this transaction committed: one record at a time instead.
                log.warning(
                    "batch transaction failed, handling its records one by one",
                    extra={"group": self.group, "records": len(items), "error": repr(exc)},
                )
                for item in _records(items):
                    await self._process_item(item)
                return
            if redo:
                await self._process_items(redo, savepoints=True)
            if failed is not None:
                alone, first_error = failed
                for item in alone:
                    await self._process_item(item, first_error=first_error)

    async def _handle_batch(
        self, items: list[_Unit], *, savepoints: bool = True
    ) -> tuple[_Failure | None, list[_Unit], list[_Unit]]:
        """One transaction over ``items``; returns the failure (if any: the records to
        handle alone), the units before it to handle again, and the units after it.

        A unit is a record, or an ordered set handler's run of records (one call). With
        ``savepoints`` (and more than one unit) each unit runs in one, so a failure undoes
        only its own unit: nothing is to be handled again. Without, a failure rolls back
        the whole transaction: the fresh units before it come back to be handled again.
        Units after a failed one are not handled here (their marks are removed or rolled
        back): the caller retries the failed records alone, then goes on with the rest.
        """
        outcomes: list[tuple[CloudEvent, str]] = []
        result: tuple[_Failure | None, list[_Unit], list[_Unit]] = None, [], []
        # Bound to the first record's organization from the start (a batch of one
        # costs no more statements than a transaction per record did).
        bound: str = _tenant(items[0])
        try:
            async with self._transaction(bound, _records(items)) as tx:
                session, conn, fresh = tx.session, tx.conn, tx.fresh
                # A savepoint per unit only when a failure must spare other units' work.
                savepoints = savepoints and len(items) > 1 and len(fresh) > 1
                in_savepoint = False
                for index, unit in enumerate(items):
                    # the unit's fresh records (a second copy in this batch is a duplicate)
                    mine: list[_Item] = []
                    seen: list[tuple[CloudEvent, str]] = []
                    for item in _records([unit]):
                        if item.event.id in fresh:
                            fresh.discard(item.event.id)
                            mine.append(item)
                            seen.append((item.event, "handled"))
                        else:
                            seen.append((item.event, "duplicate"))
                    if not mine:
                        outcomes.extend(seen)
                        continue
                    # One round trip: close the previous unit's savepoint, bind this
                    # unit's organization, open its savepoint.
                    tenant = _tenant(unit)
                    sql: list[str] = []
                    if in_savepoint:
                        sql.append(f"RELEASE SAVEPOINT {_SAVEPOINT}")
                        in_savepoint = False
                    if tenant != bound:
                        sql.append(rebind_sql(tenant))
                        session.info["organization_id"] = bound = tenant
                    if savepoints:
                        sql.append(f"SAVEPOINT {_SAVEPOINT}")
                    if sql:
                        await conn.execute("; ".join(sql))
                    try:
                        if isinstance(unit, _Run):
                            await self._apply_run(session, unit, mine)
                        else:
                            await self._run_handler(session, unit)
                    except Exception as exc:
                        if not savepoints:
                            raise _Failed(index, exc) from exc
                        await conn.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
                        unhandled = [item.event.id for item in mine] + list(fresh)
                        await conn.execute(_UNMARK, self.group, unhandled)
                        result = _failure(unit, exc), [], items[index + 1 :]
                        break
                    outcomes.extend(seen)
                    in_savepoint = savepoints
                # The last savepoint needs no RELEASE: the commit takes it along.
        except _Failed as exc:
            # Rolled back whole: the units handled before the failed one are undone.
            before = items[: exc.index]
            if any(outcome == "handled" for _, outcome in outcomes):
                outcomes, redo = [], before
            else:
                redo = []  # only duplicates came before it: they stay counted as such
            result = _failure(items[exc.index], exc.error), redo, items[exc.index + 1 :]
        for event, outcome in outcomes:
            self._counted(event, outcome)
        return result

    async def _apply_run(self, session: AsyncSession, run: _Run, fresh: list[_Item]) -> None:
        """An ordered handler's run: its fresh records' rows in one call."""
        wanted = {id(item) for item in fresh}
        rows = [row for item, row in zip(run.items, run.rows, strict=True) if id(item) in wanted]
        types = "+".join(sorted({item.event.type for item in fresh}))
        token = organization_id_var.set(run.tenant)
        try:
            with tracer().start_as_current_span(f"consume {types} x{len(rows)}"):
                await run.handler.apply(session, rows)
        finally:
            organization_id_var.reset(token)

    async def _run_handler(self, session: AsyncSession, item: _Item) -> None:
        ctx = context_from_kafka(item.record.headers)
        token = organization_id_var.set(item.event.tenantid)
        try:
            with tracer().start_as_current_span(f"consume {item.event.type}", context=ctx):
                await item.handler(session, item.event)
        finally:
            organization_id_var.reset(token)

    # --- set-based handlers ----------------------------------------------------------

    def _take_sets(self, items: list[_Item]) -> tuple[list[_Item], list[_Item]]:
        """``items`` split into those a :class:`SetHandler` takes and the others."""
        sets = [item for item in items if _unordered_set(item.handler)]
        if not sets:
            return [], items
        return sets, [item for item in items if not _unordered_set(item.handler)]

    async def _process_sets(self, items: list[_Item]) -> None:
        """Each organization's ``items`` in one transaction: their inbox marks in one
        statement, then each type's records in one call of its handler.

        A record whose data does not parse is handled alone (and dead-lettered at once);
        if the organization's transaction fails, each of its records is handled alone,
        with the usual retries and dead-lettering.
        """
        by_tenant: dict[str, list[tuple[_Item, Any]]] = {}
        for item in items:
            handler = item.handler
            assert isinstance(handler, SetHandler)
            try:
                row = handler.parse(item.event)
            except Exception:  # its own path: dead-lettered (at once when malformed)
                await self._process_item(item)
                continue
            by_tenant.setdefault(item.event.tenantid, []).append((item, row))
        for tenant, rows in by_tenant.items():
            try:
                outcomes = await self._apply_sets(tenant, rows)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "set-based handling failed, handling its records one by one",
                    extra={"group": self.group, "records": len(rows), "error": repr(exc)},
                )
                for item, _ in rows:
                    await self._process_item(item)
                continue
            for event, outcome in outcomes:
                self._counted(event, outcome)

    async def _apply_sets(
        self, tenant: str, rows: list[tuple[_Item, Any]]
    ) -> list[tuple[CloudEvent, str]]:
        outcomes: list[tuple[CloudEvent, str]] = []
        sets: dict[int, tuple[SetHandler[Any], list[Any]]] = {}
        async with self._transaction(tenant, [item for item, _ in rows]) as tx:
            session, fresh = tx.session, tx.fresh
            for item, row in rows:
                if item.event.id not in fresh:
                    outcomes.append((item.event, "duplicate"))
                    continue
                fresh.discard(item.event.id)  # a second copy in this batch is a duplicate
                handler = item.handler
                assert isinstance(handler, SetHandler)
                sets.setdefault(id(handler), (handler, []))[1].append((item.event.type, row))
                outcomes.append((item.event, "handled"))
            token = organization_id_var.set(tenant)
            try:
                ordered = sorted(sets.values(), key=lambda entry: entry[0].order)
                for handler, typed in ordered:
                    name = "+".join(sorted({etype for etype, _ in typed}))
                    with tracer().start_as_current_span(f"consume {name} x{len(typed)}"):
                        await handler.apply(session, [row for _, row in typed])
            finally:
                organization_id_var.reset(token)
        return outcomes

    # --- one record at a time --------------------------------------------------------

    async def process(self, record: ConsumerRecord[Any, Any]) -> None:
        """Handle one record in its own transaction, with retries and dead-lettering."""
        item = await self._decode(record)
        if item is not None:
            await self._process_item(item)

    async def _process_item(self, item: _Item, first_error: Exception | None = None) -> None:
        """Handle ``item`` alone; ``first_error`` is how its first attempt (in a batch) failed."""
        attempts = self.settings.consumer_max_attempts
        attempt = 1
        outage = 0
        error = first_error
        while True:
            if error is None:
                try:
                    outcome = await self._handle(item.handler, item.event, item.record)
                    self._counted(item.event, outcome)
                    return
                except Exception as exc:
                    error = exc
            if isinstance(error, (PermanentError, ValidationError)):
                await self.dead_letter(item.record, f"permanent: {error!r}"[:1000])
                return
            if database_unavailable(error):
                # PostgreSQL restarting or unreachable is not the record's fault: wait for
                # it, however long, and never spend an attempt (a restart outlasting the
                # attempts' backoff dead-lettered accepted messages). The offset stays
                # uncommitted meanwhile, so consumer lag shows the stall.
                outage += 1
                log.warning(
                    "database unavailable, the record waits for it",
                    extra={
                        "group": self.group,
                        "event_id": str(item.event.id),
                        "error": repr(error),
                    },
                )
                await asyncio.sleep(
                    min(OUTAGE_MAX_WAIT_S, OUTAGE_FIRST_WAIT_S * 2 ** min(outage, 5))
                )
                error = None
                continue
            log.warning(
                "handler failed",
                extra={
                    "group": self.group,
                    "event_id": str(item.event.id),
                    "type": item.event.type,
                    "attempt": attempt,
                    "error": repr(error),
                },
            )
            if attempt >= attempts:
                await self.dead_letter(item.record, f"failed {attempts} times: {error!r}"[:1000])
                return
            await asyncio.sleep(self.settings.consumer_retry_backoff_s * 2 ** (attempt - 1))
            attempt += 1
            error = None

    async def _handle(
        self, handler: Handler, event: CloudEvent, record: ConsumerRecord[Any, Any]
    ) -> str:
        item = _Item(record, event, handler)
        async with self._transaction(event.tenantid, [item]) as tx:
            if not tx.fresh:
                return "duplicate"
            await self._run_handler(tx.session, item)
            return "handled"

    async def dead_letter(self, record: ConsumerRecord[Any, Any], reason: str) -> None:
        if self._dlq is None:
            self._dlq = make_producer(self.settings)
            await self._dlq.start()
        headers = [
            *(record.headers or ()),
            ("pytake-dlq-reason", reason.encode()),
            ("pytake-dlq-group", self.group.encode()),
            ("pytake-dlq-source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        await self._dlq.send_and_wait(
            record.topic + ".dlq", value=record.value, key=record.key, headers=headers
        )
        EVENTS_DEAD_LETTERED.labels(self.service, self.group, record.topic).inc()
        log.error(
            "record dead-lettered",
            extra={
                "group": self.group,
                "topic": record.topic,
                "offset": record.offset,
                "reason": reason,
            },
        )
