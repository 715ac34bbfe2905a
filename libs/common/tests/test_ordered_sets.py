"""Ordered set handlers: a run of a batch's records in one call, at its place in the batch."""

import asyncio
import dataclasses
import uuid

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from sqlalchemy import text

from pytake_common.consumer import EventConsumer, SetHandler, envelope_type
from pytake_common.events import CloudEvent

from .plumbing import hit, note_event, settings_for, write_note_with_event
from .test_set_handlers import HIT_ALL, NoteRef, _type, marks, records


class Reading:
    """An ordered ``apply``: notes each row's hits as it finds them (what the plain
    handler's records before it did), then hits them all in one statement."""

    def __init__(self, poisoned: set[uuid.UUID] | None = None) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.poisoned = poisoned or set()

    async def __call__(self, session, rows: list[NoteRef]) -> None:
        org = await session.execute(text("SELECT current_setting('pytake.organization_id')"))
        found = await session.execute(
            text("SELECT id, hits FROM notes WHERE id = ANY(:ids)").bindparams(
                HIT_ALL.compile().binds["ids"]
            ),
            {"ids": [r.note_id for r in rows]},
        )
        hits = {row[0]: row[1] for row in found.all()}
        self.calls.append((org.scalar_one(), [hits[r.note_id] for r in rows]))
        await session.execute(HIT_ALL, {"ids": [r.note_id for r in rows]})
        if self.poisoned & {r.note_id for r in rows}:
            await session.execute(text("SELECT 1 / 0"))


async def hits_of(db, org: uuid.UUID, event: CloudEvent) -> int:
    async with db.transaction(organization_id=org) as s:
        found = await s.execute(
            text("SELECT hits FROM notes WHERE id = :i"), {"i": uuid.UUID(event.data["note_id"])}
        )
        return int(found.scalar_one())


async def test_runs_keep_their_place_among_the_batch_s_other_records(db, kafka_bootstrap):
    """The ordered handler sees what the plain records before it did, and not those
    after; each run is one call per organization; a redelivered batch does nothing."""
    settings = settings_for(kafka_bootstrap, "sets")
    ordered, plain, a, b = _type(), _type(), uuid.uuid4(), uuid.uuid4()
    note = await write_note_with_event(db, ordered, a)
    other = await write_note_with_event(db, ordered, b)

    def on_note(etype: str, event: CloudEvent) -> CloudEvent:
        return note_event(etype, uuid.UUID(event.tenantid), uuid.UUID(event.data["note_id"]))

    batch = [
        on_note(ordered, note),
        on_note(plain, note),
        on_note(ordered, note),
        on_note(ordered, other),
        on_note(ordered, note),
        on_note(plain, note),
        on_note(ordered, note),
    ]
    apply = Reading()
    group = f"g-{uuid.uuid4().hex[:6]}"
    handlers = {ordered: SetHandler(NoteRef, apply, ordered=True), plain: hit}
    consumer = EventConsumer(settings, db, group, handlers)
    try:
        # one record twice: the copy joins the last run, as a duplicate
        await consumer.process_batch(records([*batch, batch[2]]))
        # hits each call found: the first run 0 (then its own +1); after the plain +1,
        # the second run's two records of a in one call (2, 2; its statement +1); b's run
        # alone in the same stretch; the last run after the second plain +1
        assert apply.calls == [(str(a), [0]), (str(a), [2, 2]), (str(b), [0]), (str(a), [4])]
        assert await hits_of(db, a, note) == 5 and await hits_of(db, b, other) == 1
        assert await marks(db, group) == len(batch)
        await consumer.process_batch(records(batch))
        assert len(apply.calls) == 4 and await hits_of(db, a, note) == 5
    finally:
        await consumer.close()


async def test_a_failing_run_falls_back_to_one_record_at_a_time_then_the_dlq(db, kafka_bootstrap):
    settings = settings_for(kafka_bootstrap, "sets")
    ordered, plain, org = _type(), _type(), uuid.uuid4()
    y, x, poison, w, z = [await write_note_with_event(db, ordered, org) for _ in range(5)]
    apply = Reading(poisoned={uuid.UUID(poison.data["note_id"])})

    def as_plain(event: CloudEvent) -> CloudEvent:
        return note_event(plain, org, uuid.UUID(event.data["note_id"]))

    handlers = {ordered: SetHandler(NoteRef, apply, ordered=True), plain: hit}
    consumer = EventConsumer(settings, db, f"g-{uuid.uuid4().hex[:6]}", handlers)
    dlq = AIOKafkaConsumer(
        poison.topic + ".dlq",
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"dlq-{uuid.uuid4().hex[:6]}",
    )
    try:
        await consumer.process_batch(records([as_plain(y), x, poison, as_plain(w), z]))
    finally:
        await consumer.close()
    # the run of two (rolled back with the plain record before it), then each of its
    # records alone (the poisoned one as often as the consumer tries), then the rest
    assert [len(rows) for _, rows in apply.calls] == [2] + [1] * (
        2 + settings.consumer_max_attempts
    )
    assert [await hits_of(db, org, e) for e in (y, x, poison, w, z)] == [1, 1, 0, 1, 1]
    await dlq.start()
    try:
        dead: list[ConsumerRecord] = []
        while not dead:
            got = await asyncio.wait_for(dlq.getmany(timeout_ms=2000), 30)
            dead += [r for rs in got.values() for r in rs]
    finally:
        await dlq.stop()
    assert [CloudEvent.model_validate_json(r.value).id for r in dead] == [poison.id]
    assert b"division by zero" in dict(dead[0].headers)["pytake-dlq-reason"]


def test_the_envelope_s_type_is_read_from_its_bytes():
    event = CloudEvent(
        source='pytake/"x","type":"not.this"',
        type="pytake.s.thing.done.v1",
        subject="s",
        tenantid=str(uuid.uuid4()),
        data={"type": "text", "nested": {"type": "other"}},
    )
    assert envelope_type(event.to_bytes()) == "pytake.s.thing.done.v1"
    # laid out otherwise: not read (the record is parsed whole)
    assert envelope_type(b'{"id":"x","type":"a.b"}') is None
    assert envelope_type(None) is None


async def test_a_batch_of_records_nobody_here_handles_costs_no_transaction(db, kafka_bootstrap):
    settings = settings_for(kafka_bootstrap, "sets")
    mine, theirs, org = _type(), _type(), uuid.uuid4()
    consumer = EventConsumer(settings, db, f"g-{uuid.uuid4().hex[:6]}", {mine: hit})

    def no_transaction(*args, **kwargs):
        raise AssertionError("a transaction for records of no handler")

    consumer.db = type("NoDb", (), {"transaction": staticmethod(no_transaction)})()
    foreign = note_event(theirs, org, uuid.uuid4())
    broken = foreign.to_bytes().replace(b'"data":', b'"data":[')  # not even valid JSON
    batch = records([foreign, foreign])
    batch[1] = dataclasses.replace(batch[1], value=broken)
    await consumer.process_batch(batch)  # no error, no dead letter, no transaction
    assert consumer._dlq is None
