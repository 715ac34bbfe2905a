"""The consumer's transaction: begun on the raw connection, joined by the handlers' session."""

import uuid

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from pytake_common import rawpg
from pytake_common.consumer import EventConsumer, database_unavailable
from pytake_common.events import CloudEvent
from pytake_common.pgtenant import asyncpg_dsn

from .plumbing import count_hits, eventually, hit, settings_for, write_note_with_event
from .test_plumbing import RecordingConsumer
from .test_set_handlers import _type, marks, records


async def test_the_session_and_the_raw_connection_share_one_transaction_bound_to_the_record_s_org(
    db, kafka_bootstrap
):
    etype, a, b = _type(), uuid.uuid4(), uuid.uuid4()
    events = [await write_note_with_event(db, etype, org) for org in (a, b, a)]
    seen: list[tuple[str, int, int]] = []

    async def handler(session, event: CloudEvent) -> None:
        await hit(session, event)  # through the session (it joins the transaction here)
        async with session.begin_nested() as savepoint:  # the session's, rolled back
            await session.execute(text("UPDATE notes SET hits = hits + 100"))
            await savepoint.rollback()
        conn = await rawpg.driver(session)
        org = await conn.fetchval("SELECT current_setting('pytake.organization_id')")
        mine = await conn.fetchval(
            "SELECT hits FROM notes WHERE id = $1", uuid.UUID(event.data["note_id"])
        )
        visible = await conn.fetchval("SELECT count(*) FROM notes")  # row-level security
        seen.append((org, mine, visible))

    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = RecordingConsumer(settings_for(kafka_bootstrap, "tx"), db, group, {etype: handler})
    try:
        async with consumer.holding():
            await consumer.process_batch(records(events))
            await consumer.process_batch(records(events[:1]))  # a redelivery
        assert seen == [(str(a), 1, 2), (str(b), 1, 1), (str(a), 1, 2)]
        assert await count_hits(db, a) == 2 and await count_hits(db, b) == 1
        assert consumer.outcomes == ["handled"] * 3 + ["duplicate"]
        assert db.engine.pool.checkedout() == 0  # the kept connection went back
    finally:
        await consumer.close()


async def test_a_partial_redelivery_handles_only_the_records_not_marked_before(db, kafka_bootstrap):
    etype, org = _type(), uuid.uuid4()
    events = [await write_note_with_event(db, etype, org) for _ in range(4)]
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = RecordingConsumer(settings_for(kafka_bootstrap, "tx"), db, group, {etype: hit})
    try:
        await consumer.process_batch(records(events[1:3]))
        await consumer.process_batch(records(events))
        assert await count_hits(db, org) == 4
        assert consumer.outcomes == ["handled"] * 2 + [
            "handled",
            "duplicate",
            "duplicate",
            "handled",
        ]
        assert await marks(db, group) == 4
    finally:
        await consumer.close()


async def test_a_handler_that_swallows_a_failed_statement_commits_nothing(db, kafka_bootstrap):
    """The transaction was aborted: COMMIT rolled it back, so the record is not handled
    (retried, then dead-lettered) and neither its work nor its mark stays."""
    etype, org = _type(), uuid.uuid4()
    event = await write_note_with_event(db, etype, org)

    async def swallows(session, ev: CloudEvent) -> None:
        await hit(session, ev)
        conn = await rawpg.driver(session)
        with pytest.raises(Exception, match="division by zero"):
            await conn.fetchval("SELECT 1 / 0")

    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = RecordingConsumer(settings_for(kafka_bootstrap, "tx"), db, group, {etype: swallows})
    dead = _dead_letters(consumer)
    try:
        async with consumer.holding():
            await consumer.process_batch(records([event]))
            assert db.engine.pool.checkedout() == 0  # a failed transaction's connection
        assert len(dead) == 1 and "rolled back" in dead[0]
        assert consumer.outcomes == []
        assert await count_hits(db, org) == 0 and await marks(db, group) == 0
    finally:
        await consumer.close()


async def _commits(session, ev: CloudEvent) -> None:
    await hit(session, ev)
    await session.commit()


async def _rolls_back(session, ev: CloudEvent) -> None:
    await hit(session, ev)
    await session.rollback()  # the whole transaction: the mark too
    await hit(session, ev)  # would run in a transaction of its own, unbound


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (_commits, "committed by the consumer"),
        (_rolls_back, "rolled the consumer's transaction back"),
    ],
)
async def test_a_handler_may_not_end_the_consumer_s_transaction(
    db, kafka_bootstrap, handler, reason
):
    etype, org = _type(), uuid.uuid4()
    event = await write_note_with_event(db, etype, org)
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = EventConsumer(settings_for(kafka_bootstrap, "tx"), db, group, {etype: handler})
    dead = _dead_letters(consumer)
    try:
        await consumer.process_batch(records([event]))
        assert len(dead) == 1 and reason in dead[0]
        assert await count_hits(db, org) == 0 and await marks(db, group) == 0
    finally:
        await consumer.close()


def _dead_letters(consumer: EventConsumer) -> list[str]:
    """The reasons ``consumer`` dead-letters records for, instead of producing them."""
    dead: list[str] = []

    async def dead_letter(record, reason: str) -> None:
        dead.append(reason)

    consumer.dead_letter = dead_letter  # type: ignore[method-assign]
    return dead


async def _close_pooled_connections_server_side(db, *kept) -> None:
    """What a PostgreSQL restart does to the connections sitting in the pool (and to
    ``kept`` ones, asyncpg's): the server closes them; SQLAlchemy's pool does not know
    until a statement of its own."""
    pooled = [await db.engine.connect() for _ in range(db.engine.pool.size())]
    raws = [(await p.get_raw_connection()).driver_connection for p in pooled] + list(kept)
    for p in pooled:
        await p.close()
    admin = await asyncpg.connect(asyncpg_dsn(db.url))
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid",
            [raw.get_server_pid() for raw in raws],
        )
    finally:
        await admin.close()
    await eventually(lambda: _all_closed(raws), timeout=10)


async def _all_closed(raws) -> bool:
    return all(raw.is_closed() for raw in raws)


async def test_connections_the_server_closed_in_the_pool_cost_no_attempt(db, kafka_bootstrap):
    """A raw statement on such a connection fails with "connection is closed": the kit
    takes another connection (and would count it as the database's outage, not the
    record's failure), so no record is dead-lettered after a PostgreSQL restart."""
    etype, org = _type(), uuid.uuid4()
    events = [await write_note_with_event(db, etype, org) for _ in range(2)]
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = RecordingConsumer(settings_for(kafka_bootstrap, "tx"), db, group, {etype: hit})
    try:
        await _close_pooled_connections_server_side(db)  # more than the attempts
        await consumer.process_batch(records(events[:1]))
        async with consumer.holding():
            await consumer.process_batch(records(events[1:]))
            assert consumer._held is not None
            await _close_pooled_connections_server_side(db, consumer._held[1].driver_connection)
            await consumer.process_batch(records(events[1:]))  # a redelivery
        assert consumer.outcomes == ["handled", "handled", "duplicate"]
        assert await count_hits(db, org) == 2
        await _close_pooled_connections_server_side(db)
        async with rawpg.transaction(db, org) as conn:
            assert await conn.fetchval("SELECT count(*) FROM notes") == 2
    finally:
        await consumer.close()


def test_a_closed_connection_is_the_database_s_outage_not_the_record_s_fault():
    assert database_unavailable(asyncpg.InterfaceError("connection is closed"))
    assert not database_unavailable(asyncpg.InterfaceError("another operation is in progress"))


async def test_a_database_transaction_on_a_connection_closed_in_the_pool_renews_the_pool(db):
    """Database.transaction() begins raw; on a connection the server closed it takes
    SQLAlchemy's path, which reports a disconnect and renews the pool (the next works)."""
    org = uuid.uuid4()
    await _close_pooled_connections_server_side(db)
    with pytest.raises(DBAPIError) as failed:
        async with db.transaction(organization_id=org) as session:
            await session.execute(text("SELECT 1"))
    assert failed.value.connection_invalidated
    async with db.transaction(organization_id=org) as session:
        assert await session.scalar(text("SELECT count(*) FROM notes")) == 0
