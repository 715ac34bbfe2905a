"""Set-based handlers: a batch's records of one type and organization in a few statements."""

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from pydantic import BaseModel
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from pytake_common.consumer import EventConsumer, SetHandler
from pytake_common.events import CloudEvent
from pytake_common.mechanics import processed_events

from .plumbing import count_hits, note_event, settings_for, write_note_with_event

HIT_ALL = text("UPDATE notes SET hits = hits + 1 WHERE id = ANY(:ids)").bindparams(
    bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))
)


class NoteRef(BaseModel):
    note_id: uuid.UUID


def _type() -> str:
    letters = uuid.uuid4().hex[:8].translate(str.maketrans("0123456789", "ghijklmnop"))
    return f"pytake.s{letters}.note.added.v1"


def records(events: list[CloudEvent]) -> list[ConsumerRecord]:
    out = []
    for offset, ev in enumerate(events):
        value = ev.to_bytes()
        out.append(
            ConsumerRecord(
                ev.topic, 0, offset, 0, 0, ev.subject.encode(), value, None, 0, len(value), []
            )
        )
    return out


class Counting:
    """A set handler's ``apply`` that hits every note in one statement and logs its calls."""

    def __init__(self, poisoned: set[uuid.UUID] | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.poisoned = poisoned or set()

    async def __call__(self, session, rows: list[NoteRef]) -> None:
        org = await session.execute(text("SELECT current_setting('pytake.organization_id')"))
        self.calls.append((org.scalar_one(), len(rows)))
        await session.execute(HIT_ALL, {"ids": [r.note_id for r in rows]})
        if self.poisoned & {r.note_id for r in rows}:
            await session.execute(text("SELECT 1 / 0"))


async def marks(db, group: str) -> int:
    async with db.transaction(bypass_rls=True) as s:
        stmt = select(func.count()).where(processed_events.c.consumer_group == group)
        return int((await s.execute(stmt)).scalar_one())


async def test_each_organization_s_records_are_applied_at_once_and_duplicates_skipped(
    db, kafka_bootstrap
):
    settings = settings_for(kafka_bootstrap, "sets")
    etype, a, b = _type(), uuid.uuid4(), uuid.uuid4()
    events = [await write_note_with_event(db, etype, org) for org in (a, b, a, a, b)]
    apply = Counting()
    group = f"g-{uuid.uuid4().hex[:6]}"
    consumer = EventConsumer(settings, db, group, {etype: SetHandler(NoteRef, apply)})
    try:
        # the first record alone (the per-record path: a set of one), then the whole batch
        # with a copy of one record: what was handled is a duplicate, once
        await consumer.process(records(events[:1])[0])
        await consumer.process_batch(records([*events, events[3]]))
        assert apply.calls == [(str(a), 1), (str(a), 2), (str(b), 2)]
        assert await count_hits(db, a) == 3 and await count_hits(db, b) == 2
        assert await marks(db, group) == 5
        await consumer.process_batch(records(events))  # all redelivered: nothing again
        assert len(apply.calls) == 3 and await count_hits(db, a) == 3
    finally:
        await consumer.close()


async def test_a_failing_set_falls_back_to_one_record_at_a_time_then_the_dlq(db, kafka_bootstrap):
    settings = settings_for(kafka_bootstrap, "sets")
    etype, org = _type(), uuid.uuid4()
    events = [await write_note_with_event(db, etype, org) for _ in range(4)]
    poisoned = events[1]
    malformed = note_event(etype, org, uuid.uuid4()).model_copy(update={"data": {"x": 1}})
    apply = Counting(poisoned={uuid.UUID(poisoned.data["note_id"])})
    consumer = EventConsumer(
        settings, db, f"g-{uuid.uuid4().hex[:6]}", {etype: SetHandler(NoteRef, apply)}
    )
    dlq = AIOKafkaConsumer(
        poisoned.topic + ".dlq",
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"dlq-{uuid.uuid4().hex[:6]}",
    )
    try:
        await consumer.process_batch(records([*events, malformed]))
    finally:
        await consumer.close()
    # the malformed record alone (at once), the set of four (rolled back), then each of
    # the four alone: the poisoned one as often as the consumer tries
    assert apply.calls[0] == (str(org), 4)
    assert sorted(n for _, n in apply.calls[1:]) == [1] * (3 + settings.consumer_max_attempts)
    assert await count_hits(db, org) == 3
    await dlq.start()
    try:
        dead: list[ConsumerRecord] = []
        while len(dead) < 2:
            batch = await asyncio.wait_for(dlq.getmany(timeout_ms=2000), 30)
            dead += [r for rs in batch.values() for r in rs]
    finally:
        await dlq.stop()
    reasons = {CloudEvent.model_validate_json(r.value).id: dict(r.headers) for r in dead}
    assert set(reasons) == {poisoned.id, malformed.id}
    assert b"division by zero" in reasons[poisoned.id]["pytake-dlq-reason"]
    assert b"permanent" in reasons[malformed.id]["pytake-dlq-reason"]


async def test_one_handler_for_several_types_gets_their_records_in_the_batch_s_order(
    db, kafka_bootstrap
):
    """Registered for two types, one SetHandler is called once per organization with both
    types' records in the order they came (each read by ``parse``); handlers apply in
    ascending ``order``, whatever came first."""
    settings = settings_for(kafka_bootstrap, "sets")
    first, second, later, org = _type(), _type(), _type(), uuid.uuid4()
    events = [
        await write_note_with_event(db, etype, org) for etype in (later, first, second, first)
    ]
    seen: list[list[tuple[str, uuid.UUID]]] = []
    applied: list[str] = []

    async def both(session, rows):
        applied.append("both")
        seen.append(rows)

    async def after(session, rows):
        applied.append("after")

    def read(event: CloudEvent) -> tuple[str, uuid.UUID]:
        return event.type, event.parse_data(NoteRef).note_id

    shared = SetHandler(NoteRef, both, parse=read)  # type: ignore[arg-type]
    handlers = {first: shared, second: shared, later: SetHandler(NoteRef, after, order=1)}
    consumer = EventConsumer(settings, db, f"g-{uuid.uuid4().hex[:6]}", handlers)
    await consumer.process_batch(records(events))
    assert applied == ["both", "after"]
    assert seen == [[(e.type, uuid.UUID(e.data["note_id"])) for e in events[1:]]]
