"""Inbound messages: conversations opened, reused, reopened; duplicates stored once."""

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from pydantic import ValidationError
from sqlalchemy import func, select

from pytake_common.consumer import EventConsumer
from pytake_common.events import CloudEvent
from pytake_common.mechanics import processed_events
from pytake_conversations.handlers import HANDLERS

from .helpers import Customer, conversation_rows, deliver, emitted, message_rows, set_conversation

T = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def types(events):
    return [e["type"].removeprefix("pytake.conversations.") for e in events]


async def test_first_inbound_opens_a_conversation_and_the_next_reuses_it(app):
    org = uuid.uuid4()
    customer = Customer(org)
    first = customer.says("hi", at=T)
    await deliver(app, first)
    [conv] = await conversation_rows(app, org)
    assert conv["status"] == "open"
    assert conv["contact_id"] == customer.contact_id
    assert conv["number_id"] == customer.number_id
    assert conv["wa_id"] == customer.wa_id
    assert conv["phone_number_id"] == first.data["phone_number_id"]
    assert conv["last_inbound_at"] == T
    [msg] = await message_rows(app, org)
    assert msg["id"] == uuid.UUID(first.data["message_id"])
    assert (msg["direction"], msg["type"], msg["text"], msg["status"]) == (
        "inbound",
        "text",
        "hi",
        "received",
    )
    assert msg["wamid"] == first.data["wamid"]
    assert msg["meta_timestamp"] == T
    assert msg["content"]["text"] == {"body": "hi"}

    events = await emitted(app, org)
    assert types(events) == ["conversation.opened.v1", "message.appended.v1"]
    opened, appended = events
    assert opened["subject"] == str(conv["id"])
    assert opened["data"] == {
        "conversation_id": str(conv["id"]),
        "organization_id": str(org),
        "contact_id": str(customer.contact_id),
        "number_id": str(customer.number_id),
        "opened_at": opened["data"]["opened_at"],
        "previous_conversation_id": None,
        "started_by": None,
    }
    assert datetime.fromisoformat(opened["data"]["opened_at"]) == conv["created_at"]
    assert appended["subject"] == str(msg["id"])
    assert appended["data"] == {
        "message_id": str(msg["id"]),
        "organization_id": str(org),
        "conversation_id": str(conv["id"]),
        "contact_id": str(customer.contact_id),
        "sender_type": None,
        "sender_id": None,
        "text": "hi",
        "reply": None,
        "direction": "inbound",
        "type": "text",
        "created_at": appended["data"]["created_at"],
        "campaign_id": None,
        "recipient_id": None,
    }
    assert datetime.fromisoformat(appended["data"]["created_at"]) == msg["created_at"]

    await deliver(app, customer.says("still there?", at=T + timedelta(minutes=5)))
    await deliver(app, customer.says("late one", at=T - timedelta(minutes=5)))  # out of order
    [conv] = await conversation_rows(app, org)
    assert conv["last_inbound_at"] == T + timedelta(minutes=5)
    assert len(await message_rows(app, org)) == 3
    assert types(await emitted(app, org)) == [
        "conversation.opened.v1",
        "message.appended.v1",
        "message.appended.v1",
        "message.appended.v1",
    ]

    # The same customer on another number of the organization has another conversation.
    other_number = Customer(org, customer.wa_id)
    await deliver(app, other_number.says("hi other number", at=T))
    assert len(await conversation_rows(app, org)) == 2


async def test_resolved_conversation_is_reopened(app):
    org = uuid.uuid4()
    customer = Customer(org)
    await deliver(app, customer.says(at=T))
    [conv] = await conversation_rows(app, org)
    await set_conversation(app, org, conv["id"], status="resolved")
    await deliver(app, customer.says("it broke again", at=T + timedelta(minutes=1)))
    [again] = await conversation_rows(app, org)
    assert again["id"] == conv["id"]
    assert again["status"] == "open"
    events = await emitted(app, org)
    assert types(events) == [
        "conversation.opened.v1",
        "message.appended.v1",
        "conversation.status_changed.v1",
        "conversation.opened.v1",
        "message.appended.v1",
    ]
    changed = events[2]["data"]
    assert (changed["old_status"], changed["new_status"], changed["changed_by"]) == (
        "resolved",
        "open",
        None,
    )
    assert events[3]["data"]["conversation_id"] == str(conv["id"])
    assert datetime.fromisoformat(events[3]["data"]["opened_at"]) == again["updated_at"]


async def test_closed_conversation_stays_closed_and_a_new_one_starts(app):
    org = uuid.uuid4()
    customer = Customer(org)
    await deliver(app, customer.says(at=T))
    [old] = await conversation_rows(app, org)
    await set_conversation(app, org, old["id"], status="closed")
    later = customer.says("new topic", at=T + timedelta(minutes=1))
    await deliver(app, later)
    convs = await conversation_rows(app, org)
    assert [(c["id"] == old["id"], c["status"]) for c in convs] == [
        (True, "closed"),
        (False, "open"),
    ]
    new_msgs = [m for m in await message_rows(app, org) if m["conversation_id"] == convs[1]["id"]]
    assert [m["text"] for m in new_msgs] == ["new topic"]
    assert types(await emitted(app, org)).count("conversation.opened.v1") == 2


async def test_duplicate_inbound_is_stored_once(app):
    org = uuid.uuid4()
    customer = Customer(org)
    event = customer.says("only once", at=T)
    await deliver(app, event)
    await deliver(app, event)  # the same event again (handler called directly)
    replay = CloudEvent(**{**event.model_dump(), "id": uuid.uuid4()})  # same fact, new event id
    await deliver(app, replay)
    # The same wamid under another message id is the same message too.
    same_wamid = CloudEvent(
        **{
            **event.model_dump(),
            "id": uuid.uuid4(),
            "data": {**event.data, "message_id": str(uuid.uuid4())},
        }
    )
    await deliver(app, same_wamid)
    assert len(await message_rows(app, org)) == 1
    assert types(await emitted(app, org)) == ["conversation.opened.v1", "message.appended.v1"]

    # Even after the conversation was closed, a replay opens nothing and changes nothing.
    [conv] = await conversation_rows(app, org)
    await set_conversation(app, org, conv["id"], status="closed")
    await deliver(app, CloudEvent(**{**event.model_dump(), "id": uuid.uuid4()}))
    assert [c["status"] for c in await conversation_rows(app, org)] == ["closed"]
    assert len(await emitted(app, org)) == 2


async def test_concurrent_messages_of_one_customer_share_one_conversation(app):
    org = uuid.uuid4()
    customer = Customer(org)
    same = customer.says("same message", at=T)
    twin = CloudEvent(**{**same.model_dump(), "id": uuid.uuid4()})
    await asyncio.gather(
        *(
            deliver(app, e)
            for e in [
                customer.says("one", at=T),
                customer.says("two", at=T),
                same,
                twin,
                customer.says("three", at=T),
            ]
        )
    )
    convs = await conversation_rows(app, org)
    assert len(convs) == 1
    assert sorted(m["text"] for m in await message_rows(app, org)) == [
        "one",
        "same message",
        "three",
        "two",
    ]
    assert types(await emitted(app, org)).count("conversation.opened.v1") == 1
    assert types(await emitted(app, org)).count("message.appended.v1") == 4


async def test_malformed_or_cross_tenant_events_are_refused(app):
    org = uuid.uuid4()
    event = Customer(org).says()
    lying = CloudEvent(**{**event.model_dump(), "tenantid": str(uuid.uuid4())})
    # The data's tenant check (pytake_common.events.TenantEventData): a validation
    # error, which the consumer dead-letters at once like a PermanentError.
    with pytest.raises(ValidationError, match="in an event of tenant"):
        await deliver(app, lying)
    broken = CloudEvent(**{**event.model_dump(), "data": {"message_id": "nope"}})
    with pytest.raises(ValidationError):
        await deliver(app, broken)
    assert await message_rows(app, org) == []


async def test_consumer_handles_the_same_record_delivered_twice_once(app, settings):
    org = uuid.uuid4()
    event = Customer(org).says("via kafka")
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for _ in range(2):
            await producer.send_and_wait(event.topic, event.to_bytes(), key=event.subject.encode())
    finally:
        await producer.stop()
    db = app.state.db
    consumer = EventConsumer(settings, db, f"conversations-{uuid.uuid4().hex[:6]}", HANDLERS)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while not await message_rows(app, org):
            assert asyncio.get_running_loop().time() < deadline, "event never consumed"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.5)  # time for the duplicate to be (not) handled
    finally:
        stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, 15)
    assert [m["text"] for m in await message_rows(app, org)] == ["via kafka"]
    assert types(await emitted(app, org)) == ["conversation.opened.v1", "message.appended.v1"]
    async with db.transaction(bypass_rls=True) as s:
        marks = await s.scalar(
            select(func.count())
            .select_from(processed_events)
            .where(processed_events.c.event_id == event.id)
        )
    assert marks == 1
