"""The consumer's transaction: begun on the raw connection, joined by the handlers' session."""

import uuid

import pytest
from sqlalchemy import text

from pytake_common import rawpg
from pytake_common.consumer import EventConsumer
from pytake_common.events import CloudEvent

from .plumbing import count_hits, hit, settings_for, write_note_with_event
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
