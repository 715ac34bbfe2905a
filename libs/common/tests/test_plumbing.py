"""The event plumbing on a real PostgreSQL and a real Kafka-protocol broker."""

import asyncio
import contextlib
import json
import math
import sys
import uuid
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import func, select, text

from pytake_common.consumer import EventConsumer
from pytake_common.events import CloudEvent
from pytake_common.mechanics import outbox, processed_events
from pytake_common.outbox import OutboxRelay
from pytake_common.pgtenant import asyncpg_dsn
from pytake_devstack.infra import TansuBroker, free_port

from .plumbing import count_hits, eventually, hit, settings_for, write_note_with_event


def _type() -> str:
    letters = uuid.uuid4().hex[:8].translate(str.maketrans("0123456789", "ghijklmnop"))
    return f"pytake.t{letters}.note.added.v1"


@contextlib.asynccontextmanager
async def running(*workers):
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        yield stop
    finally:
        stop.set()
        for t in tasks:
            try:
                await asyncio.wait_for(t, 15)
            except TimeoutError:
                t.cancel()


async def _backlog(db) -> int:
    async with db.transaction() as s:
        return int((await s.execute(select(func.count()).select_from(outbox))).scalar_one())


async def test_event_written_in_a_transaction_is_handled_once(db, kafka_bootstrap):
    settings = settings_for(kafka_bootstrap, "plumbing")
    etype, org = _type(), uuid.uuid4()
    relay = OutboxRelay(settings, db)
    consumer = EventConsumer(settings, db, f"g-{uuid.uuid4().hex[:6]}", {etype: hit})
    async with running(relay, consumer):
        await write_note_with_event(db, etype, org)
        await eventually(lambda: count_hits(db, org))
        await asyncio.sleep(1.0)
    assert await count_hits(db, org) == 1
    assert await _backlog(db) == 0


async def test_rolled_back_change_publishes_nothing(db, kafka_bootstrap):
    settings = settings_for(kafka_bootstrap, "plumbing")
    etype, org = _type(), uuid.uuid4()
    with contextlib.suppress(RuntimeError):
        async with db.transaction(organization_id=org) as s:
            from pytake_common.outbox import add_event

            from .plumbing import note_event

            await add_event(s, note_event(etype, org, uuid.uuid4()))
            raise RuntimeError("domain change failed")
    assert await _backlog(db) == 0
    assert settings.service_name == "plumbing"


async def test_broker_down_at_write_time_then_back(db):
    port = free_port()
    settings = settings_for(f"127.0.0.1:{port}", "plumbing")
    etype, org = _type(), uuid.uuid4()
    relay = OutboxRelay(settings, db)
    consumer = EventConsumer(settings, db, f"g-{uuid.uuid4().hex[:6]}", {etype: hit})
    async with running(relay, consumer):
        await write_note_with_event(db, etype, org)
        await asyncio.sleep(2.0)  # relay and consumer are retrying against a dead broker
        assert await _backlog(db) == 1
        broker = TansuBroker(port=port)
        broker.start()
        try:
            await eventually(lambda: count_hits(db, org), timeout=60)
            await eventually(lambda: _is_zero(_backlog(db)), timeout=10)
        finally:
            stop_broker = broker.stop
    stop_broker()
    assert await count_hits(db, org) == 1


async def _is_zero(coro) -> bool:
    return (await coro) == 0


async def test_same_record_delivered_twice_is_handled_once(db, kafka_bootstrap):
    settings = settings_for(kafka_bootstrap, "plumbing")
    etype, org = _type(), uuid.uuid4()
    event = await write_note_with_event(db, etype, org)
    async with db.transaction() as s:  # publish by hand, twice, instead of through the relay
        await s.execute(outbox.delete())
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    for _ in range(2):
        await producer.send_and_wait(event.topic, event.to_bytes(), key=event.subject.encode())
    await producer.stop()
    consumer = EventConsumer(settings, db, f"g-{uuid.uuid4().hex[:6]}", {etype: hit})
    async with running(consumer):
        await eventually(lambda: count_hits(db, org))
        await asyncio.sleep(1.5)
    assert await count_hits(db, org) == 1
    async with db.transaction() as s:
        marks = (
            await s.execute(
                select(func.count())
                .select_from(processed_events)
                .where(processed_events.c.event_id == event.id)
            )
        ).scalar_one()
    assert marks == 1


class RecordingConsumer(EventConsumer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outcomes: list[str] = []

    def _counted(self, event, outcome):
        super()._counted(event, outcome)
        self.outcomes.append(outcome)


async def test_consumer_dies_after_db_commit_before_offset_commit(db, kafka_bootstrap):
    settings = settings_for(kafka_bootstrap, "plumbing")
    etype, org = _type(), uuid.uuid4()
    group = f"g-{uuid.uuid4().hex[:6]}"
    relay = OutboxRelay(settings, db)
    async with running(relay):
        await write_note_with_event(db, etype, org)
        await eventually(lambda: _is_zero(_backlog(db)))
    script = Path(__file__).parent / "crash_consumer.py"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), db.url, kafka_bootstrap, group, etype
    )
    assert await asyncio.wait_for(proc.wait(), 60) == 17  # died right after the DB commit
    assert await count_hits(db, org) == 1
    # A new member of the same group gets the uncommitted record again and skips it.
    survivor = RecordingConsumer(settings, db, group, {etype: hit})
    async with running(survivor):
        await eventually(lambda: _async(survivor.outcomes), timeout=60, interval=0.5)
    assert survivor.outcomes == ["duplicate"]
    assert await count_hits(db, org) == 1


async def _async(value):
    return value


async def test_failing_handler_goes_to_dlq_with_reason(db, kafka_bootstrap):
    settings = settings_for(kafka_bootstrap, "plumbing")
    etype, org = _type(), uuid.uuid4()
    attempts = 0

    async def broken(session, event):
        nonlocal attempts
        attempts += 1
        raise RuntimeError("handler bug")

    event = await write_note_with_event(db, etype, org)
    relay = OutboxRelay(settings, db)
    consumer = EventConsumer(settings, db, f"g-{uuid.uuid4().hex[:6]}", {etype: broken})
    dlq = AIOKafkaConsumer(
        event.topic + ".dlq",
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"dlq-{uuid.uuid4().hex[:6]}",
    )
    async with running(relay, consumer):
        await dlq.start()
        try:
            record = await asyncio.wait_for(dlq.getone(), 60)
        finally:
            await dlq.stop()
    headers = dict(record.headers)
    assert b"handler bug" in headers["pytake-dlq-reason"]
    assert record.value == event.to_bytes() or b'"id":"' + str(event.id).encode() in record.value
    assert attempts == settings.consumer_max_attempts
    assert await count_hits(db, org) == 0


async def test_batch_with_a_poisoned_record_commits_the_others(db, kafka_bootstrap):
    """One transaction per batch, a savepoint per record: a record failing in the
    database (after writing) is undone and dead-lettered alone, the records before
    and after it commit once each, every one bound to its own organization."""
    settings = settings_for(kafka_bootstrap, "plumbing")
    etype = _type()
    orgs = [uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()]
    orgs[2] = orgs[0]  # a batch spans organizations, and comes back to one
    events = [await write_note_with_event(db, etype, org) for org in orgs]
    poisoned = events[2]
    async with db.transaction() as s:  # publish by hand, under one key: one partition, in order
        await s.execute(outbox.delete())
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    for event in events:
        await producer.send_and_wait(event.topic, event.to_bytes(), key=b"one-key")
    await producer.stop()
    seen: list[tuple[str, int, str]] = []
    poisoned_attempts = 0

    async def hit_or_fail(session, event):
        nonlocal poisoned_attempts
        await hit(session, event)  # RLS: hits only if bound to the event's organization
        row = (
            await session.execute(
                text("SELECT txid_current(), current_setting('pytake.organization_id', true)")
            )
        ).one()
        seen.append((event.data["note_id"], row[0], row[1]))
        if event.id == poisoned.id:
            poisoned_attempts += 1
            await session.execute(text("SELECT 1 / 0"))  # the database refuses: tx aborted

    consumer = RecordingConsumer(settings, db, f"g-{uuid.uuid4().hex[:6]}", {etype: hit_or_fail})
    dlq = AIOKafkaConsumer(
        poisoned.topic + ".dlq",
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"dlq-{uuid.uuid4().hex[:6]}",
    )
    async with running(consumer):
        await eventually(
            lambda: _async(consumer.outcomes.count("handled") == 4), timeout=60, interval=0.2
        )
        await dlq.start()
        try:
            dead = await asyncio.wait_for(dlq.getmany(timeout_ms=5000), 30)
            while not dead:
                dead = await asyncio.wait_for(dlq.getmany(timeout_ms=5000), 30)
        finally:
            await dlq.stop()
    dead_ids = [
        CloudEvent.model_validate_json(r.value).id for records in dead.values() for r in records
    ]
    assert dead_ids == [poisoned.id]
    assert b"division by zero" in dict(next(iter(dead.values()))[0].headers)["pytake-dlq-reason"]
    assert poisoned_attempts == settings.consumer_max_attempts
    for event, org in zip(events, orgs, strict=True):
        async with db.transaction(organization_id=org) as s:
            hits = (
                await s.execute(
                    text("SELECT hits FROM notes WHERE id = :i"), {"i": event.data["note_id"]}
                )
            ).scalar_one()
        assert hits == (0 if event is poisoned else 1)
    # Each handler ran bound to its own organization; the records before the poisoned
    # one shared one transaction, and so did those after it.
    first = {note: (txid, bound) for note, txid, bound in seen if note != poisoned.data["note_id"]}
    assert [first[e.data["note_id"]][1] for e in events if e is not poisoned] == [
        str(o) for e, o in zip(events, orgs, strict=True) if e is not poisoned
    ]
    txids = [first[e.data["note_id"]][0] for e in events if e is not poisoned]
    assert txids[0] == txids[1] and txids[2] == txids[3]
    assert consumer.outcomes.count("handled") == 4


async def test_a_database_outage_outlasting_the_attempts_never_dead_letters(
    db, kafka_bootstrap, monkeypatch
):
    """PostgreSQL going away (a restart) is not the record's fault: the record waits for
    the database however many attempts that takes, then is handled once, never sent to
    the DLQ (the fault suite lost an accepted message to this before). The waits are
    shortened (16 s of them otherwise): what is tested is that the record waits."""
    import asyncpg

    from pytake_common import consumer as consuming

    monkeypatch.setattr(consuming, "OUTAGE_FIRST_WAIT_S", 0.01)
    monkeypatch.setattr(consuming, "OUTAGE_MAX_WAIT_S", 0.1)

    settings = settings_for(kafka_bootstrap, "plumbing")
    etype, org = _type(), uuid.uuid4()
    outages = settings.consumer_max_attempts + 3
    calls = 0

    async def flaky(session, event):
        nonlocal calls
        calls += 1
        if calls <= outages:
            raise asyncpg.exceptions.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation"
            )
        await hit(session, event)

    await write_note_with_event(db, etype, org)
    relay = OutboxRelay(settings, db)
    consumer = EventConsumer(settings, db, f"g-{uuid.uuid4().hex[:6]}", {etype: flaky})
    async with running(relay, consumer):
        await eventually(lambda: count_hits(db, org), timeout=90, interval=0.5)
    assert calls == outages + 1
    assert await count_hits(db, org) == 1


def test_what_counts_as_the_database_being_unavailable():
    import asyncpg
    from sqlalchemy.exc import DBAPIError

    from pytake_common.consumer import database_unavailable

    assert database_unavailable(ConnectionRefusedError())
    assert database_unavailable(asyncpg.exceptions.CannotConnectNowError("starting up"))
    assert database_unavailable(asyncpg.exceptions.AdminShutdownError("terminating"))
    wrapped = DBAPIError("SELECT 1", {}, OSError("reset"), connection_invalidated=True)
    assert database_unavailable(wrapped)
    outer = RuntimeError("while handling")
    outer.__cause__ = asyncpg.exceptions.ConnectionDoesNotExistError("closed")
    assert database_unavailable(outer)
    assert not database_unavailable(RuntimeError("handler bug"))
    assert not database_unavailable(asyncpg.exceptions.UniqueViolationError("duplicate key"))


async def test_a_backlog_is_claimed_without_a_scan_per_row(db, kafka_bootstrap):
    """The relay's claim runs at almost every poll on an empty outbox, on its own
    connection, prepared: PostgreSQL may keep a generic plan made for the empty table.
    A backlog (the broker was away) is then claimed batch by batch reading the table at
    most a couple of times a batch (``id IN (claim)`` ran the claim again for every row:
    N sorts of N rows), and by index once a full batch shows the backlog. Counted for each
    batch (the connection's table statistics before and after it)."""
    settings = settings_for(kafka_bootstrap, "plumbing").model_copy(
        update={"outbox_batch_size": 100}
    )
    relay = OutboxRelay(settings, db)
    relay._backlog_measured_at = math.inf  # the backlog gauge's count(*): a scan of its own
    await write_note_with_event(db, _type(), uuid.uuid4())
    async with db.transaction() as s:  # the backlog's rows: copies of it
        model = (await s.execute(text("SELECT topic, key, event, headers FROM outbox"))).one()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    conn = await asyncpg.connect(asyncpg_dsn(db.url))
    await conn.execute("SET ROLE pytake_app")

    async def rows_read() -> int:
        # this connection's counts not yet reported, which is all of this test's
        return int(
            await conn.fetchval(
                "SELECT coalesce(sum(seq_tup_read + idx_tup_fetch), 0)"
                " FROM pg_stat_xact_user_tables WHERE relname = 'outbox'"
            )
        )

    async def batch() -> tuple[int, int]:
        async with conn.transaction():
            before = await rows_read()
            published = await relay._publish(producer, conn)
            return published, await rows_read() - before

    try:
        assert (await batch())[0] == 1  # the one event
        for _ in range(8):  # polls of an empty outbox
            assert (await batch())[0] == 0
        n = 5000
        async with db.transaction() as s:
            await s.execute(
                text(
                    "INSERT INTO outbox (event_id, topic, key, event, headers)"
                    " SELECT gen_random_uuid(), :topic, :key, CAST(:event AS jsonb),"
                    " CAST(:headers AS jsonb) FROM generate_series(1, :n)"
                ),
                {
                    "topic": model.topic,
                    "key": model.key,
                    "event": json.dumps(model.event),
                    "headers": json.dumps(model.headers),
                    "n": n,
                },
            )
        first, first_read = await batch()
        second, second_read = await batch()
        assert first == second == 100
        assert first_read <= 3 * n, f"the first batch read {first_read} rows of {n}"
        assert second_read <= n // 10, f"the next batch read {second_read} rows of {n}"
    finally:
        await conn.close()
        await producer.stop()


async def test_an_event_the_broker_can_never_take_is_set_aside_and_the_rest_go_on(
    db, kafka_bootstrap
):
    """One outbox row too large for the broker (or not an event at all) used to hold back
    every later event of the service for good: the batch failed, rolled back, was
    claimed again. It is moved to ``outbox_dead`` with the reason; the events before and
    after it are delivered."""
    from pytake_common.metrics import OUTBOX_DEAD
    from pytake_common.outbox import add_event

    from .plumbing import note_event

    settings = settings_for(kafka_bootstrap, "plumbing-dead")
    etype, org = _type(), uuid.uuid4()
    before = await write_note_with_event(db, etype, org)
    huge = note_event(etype, org, uuid.uuid4())
    huge.data["padding"] = "x" * (2 * 1024 * 1024)  # over the producer's 1 MiB request
    async with db.transaction(organization_id=org) as s:
        await add_event(s, huge)
    async with db.transaction() as s:
        malformed = uuid.uuid4()
        await s.execute(
            text(
                "INSERT INTO outbox (event_id, topic, key, event)"
                " VALUES (:id, :topic, 'k', CAST('{\"not\": \"an event\"}' AS jsonb))"
            ),
            {"id": malformed, "topic": huge.topic},
        )
    after = await write_note_with_event(db, etype, org)
    counted = OUTBOX_DEAD.labels("plumbing-dead", huge.topic)._value.get()
    relay = OutboxRelay(settings, db)
    consumer = EventConsumer(settings, db, f"g-{uuid.uuid4().hex[:6]}", {etype: hit})
    async with running(relay, consumer):
        await eventually(lambda: _is(count_hits(db, org), 2), timeout=60, interval=0.3)
        assert await _backlog(db) == 0
    async with db.transaction() as s:
        dead = (
            await s.execute(
                text("SELECT event_id, topic, event, reason FROM outbox_dead ORDER BY id")
            )
        ).all()
        handled = set((await s.execute(select(processed_events.c.event_id))).scalars().all())
    assert [d.event_id for d in dead] == [huge.id, malformed]
    assert dead[0].reason.startswith("MessageSizeTooLargeError")
    assert dead[0].event["data"]["padding"] == huge.data["padding"]  # kept whole
    assert dead[1].reason.startswith("not an event envelope")
    assert {before.id, after.id} <= handled
    assert huge.id not in handled
    assert OUTBOX_DEAD.labels("plumbing-dead", huge.topic)._value.get() == counted + 2


async def _is(value, expected):
    return await value == expected or None


class _RefusingProducer:
    """A broker that refuses a whole request holding a record over its limit (Apache
    Kafka's MESSAGE_TOO_LARGE for the request's batch) and takes any record alone
    under it. Records only what it took."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.request: list[tuple[bytes, asyncio.Future]] = []
        self.taken: list[bytes] = []

    async def send(self, topic, value, key, headers):
        future = asyncio.get_running_loop().create_future()
        self.request.append((value, future))
        asyncio.get_running_loop().call_soon(self._answer)
        return future

    def _answer(self) -> None:
        request, self.request = self.request, []
        if not request:
            return
        from aiokafka.errors import MessageSizeTooLargeError

        too_large = any(len(value) > self.limit for value, _ in request)
        for value, future in request:
            if too_large:
                future.set_exception(MessageSizeTooLargeError())
            else:
                self.taken.append(value)
                future.set_result(None)


async def test_a_request_the_broker_refuses_is_sent_again_record_by_record(db):
    """The broker refuses the request, not the record: its records are tried alone,
    and only the one it still refuses is set aside."""
    from pytake_common.outbox import outbox_row

    from .plumbing import note_event

    relay = OutboxRelay(settings_for("127.0.0.1:1", "plumbing-split"), db)
    org = uuid.uuid4()
    events = [note_event(_type(), org, uuid.uuid4()) for _ in range(3)]
    events[1].data["padding"] = "x" * 5000
    async with db.transaction() as s:
        for e in events:
            await s.execute(outbox.insert().values(**outbox_row(e)))
    producer = _RefusingProducer(limit=4000)
    async with db.transaction() as s:
        conn = await (await s.connection()).get_raw_connection()
        assert await relay._publish(producer, conn.driver_connection) == 3
    taken = [json.loads(v)["id"] for v in producer.taken]
    assert taken == [str(events[0].id), str(events[2].id)]
    async with db.transaction() as s:
        dead = (await s.execute(text("SELECT event_id, reason FROM outbox_dead"))).all()
    assert [(d.event_id, d.reason.split(":")[0]) for d in dead] == [
        (events[1].id, "MessageSizeTooLargeError")
    ]
