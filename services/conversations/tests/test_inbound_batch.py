"""The set-based inbound handler (pytake_conversations.inbound_batch) ends a batch exactly
as the per-message handler does: same messages, conversations, stream frames, events."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from pytake_common.events import CloudEvent
from pytake_conversations import inbound_batch
from pytake_conversations.handlers import on_message_received
from pytake_conversations.tables import stream_events

from .helpers import Customer, conversation_rows, deliver, emitted, message_rows, set_conversation

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def _prepare(app, org, number):
    """Customers a and b in open conversations, c in a pending one, d new."""
    people = {
        name: Customer(org, wa_id=f"55119000000{i}", number_id=number)
        for i, name in enumerate("abcd")
    }
    for name in "abc":
        await deliver(app, people[name].says("first", at=T0))
    pending = [
        r for r in await conversation_rows(app, org) if r["contact_id"] == people["c"].contact_id
    ]
    await set_conversation(app, org, pending[0]["id"], status="pending")
    return people


def _pressed(said: CloudEvent) -> CloudEvent:
    """The customer's message as a reply-button press (its ``reply`` travels on)."""
    data = dict(said.data)
    data["type"] = "interactive"
    data["content"] = {
        **data["content"],
        "type": "interactive",
        "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "b1"}},
    }
    return said.model_copy(update={"data": data})


def _batch(people) -> list[CloudEvent]:
    a1 = people["a"].says("a1", at=T0 + timedelta(minutes=1), wamid=f"wamid.{uuid.uuid4().hex}")
    again = a1.model_copy(update={"id": uuid.uuid4()})  # the same message, another event id
    return [
        a1,
        _pressed(people["b"].says("b1", at=T0 + timedelta(minutes=3))),  # a button reply
        people["a"].says("a2", at=T0 + timedelta(minutes=2)),  # older than a1: last_inbound stays
        people["c"].says("c1", at=T0 + timedelta(minutes=1)),  # wakes its conversation up
        people["d"].says("d1", at=T0 + timedelta(minutes=1)),  # opens one
        again,
    ]


async def _outcome(app, org, people):
    contact = {p.contact_id: name for name, p in people.items()}
    conversation = {r["id"]: contact[r["contact_id"]] for r in await conversation_rows(app, org)}
    convs = sorted(
        (
            contact[r["contact_id"]],
            r["status"],
            r["unread_count"],
            r["last_inbound_at"],
            r["wa_id"],
        )
        for r in await conversation_rows(app, org)
    )
    msgs = sorted(
        (conversation[r["conversation_id"]], r["text"], r["status"], r["meta_timestamp"])
        for r in await message_rows(app, org)
    )
    async with app.state.db.transaction(organization_id=org) as s:
        frames = (
            await s.execute(
                select(stream_events.c.type, stream_events.c.data).order_by(stream_events.c.id)
            )
        ).all()

    def frame(type_, data):
        if "message" in data:
            m = data["message"]
            return type_, conversation[uuid.UUID(m["conversation_id"])], m["text"], m["status"]
        c = data["conversation"]
        return (
            type_,
            contact[uuid.UUID(c["contact_id"])],
            c["status"],
            c["unread_count"],
            c["last_inbound_at"],
        )

    events = [
        (
            e["type"],
            contact[uuid.UUID(e["data"]["contact_id"])],
            e["data"].get("direction"),
            e["data"].get("text"),
            e["data"].get("reply"),
            e["data"].get("sender_type"),
        )
        for e in await emitted(app, org)
        if "contact_id" in e["data"]
    ]
    return convs, msgs, [frame(t, d) for t, d in frames], events


async def test_a_batch_ends_as_the_same_messages_one_by_one(app):
    one_by_one, at_once, number = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    people = {org: await _prepare(app, org, number) for org in (one_by_one, at_once)}
    async with app.state.db.transaction(organization_id=one_by_one) as s:
        for event in _batch(people[one_by_one]):
            await on_message_received(s, event)
    rows = [inbound_batch.RECEIVED_SET.parse(e) for e in _batch(people[at_once])]
    async with app.state.db.transaction(organization_id=at_once) as s:
        await inbound_batch.on_messages_received(s, rows)
    expected = await _outcome(app, one_by_one, people[one_by_one])
    got = await _outcome(app, at_once, people[at_once])
    assert got[0] == expected[0]  # conversations
    assert got[1] == expected[1]  # messages
    assert got[2] == expected[2]  # stream frames, in order
    assert got[3] == expected[3]  # outbox events, in order
    assert ("b", "b1") in {
        (e[1], e[3]) for e in got[3] if e[4] == {"kind": "button", "id": "yes", "title": "b1"}
    }
    unread = {row[0]: row[2] for row in got[0]}
    assert unread["a"] == 3 and unread["b"] == 2  # a1 once, a2; the copy added nothing
