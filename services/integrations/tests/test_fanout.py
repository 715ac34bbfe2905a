"""The batch consumer: a batch's records become deliveries in one statement per
organization, in record order, each at most once."""

import json
import uuid
from datetime import UTC, datetime, timedelta

from pytake_common.events import CloudEvent
from pytake_integrations.fanout import FanOutConsumer

from .helpers import again, consumer_records, inbound, internal, make_endpoint, rows

TYPES = ("message.received", "conversation.opened", "conversation.status_changed")


async def test_a_batch_keeps_each_conversations_order_across_types_and_queues_once(
    app, settings, client, tokens
):
    org, other = uuid.uuid4(), uuid.uuid4()
    mine = await make_endpoint(client, tokens, org, "https://a.example.com/", TYPES)
    theirs = await make_endpoint(client, tokens, other, "https://b.example.com/", TYPES)
    conversation, contact = uuid.uuid4(), uuid.uuid4()
    t0 = datetime.now(UTC)

    def moved(old: str, new: str, at: datetime) -> CloudEvent:
        return internal(
            "pytake.conversations.conversation.status_changed.v1",
            org,
            conversation,
            conversation_id=conversation,
            contact_id=contact,
            old_status=old,
            new_status=new,
            changed_by=None,
            at=at,
        )

    opened = internal(
        "pytake.conversations.conversation.opened.v1",
        org,
        conversation,
        conversation_id=conversation,
        contact_id=contact,
        number_id=uuid.uuid4(),
        opened_at=t0,
    )
    message = inbound(org, conversation)
    batch = [
        moved("resolved", "open", t0),
        opened,
        inbound(other, uuid.uuid4()),
        message,
        moved("open", "resolved", t0 + timedelta(seconds=1)),
        again(opened),  # the same fact republished under another event id
        message,  # the same record twice in one batch
    ]
    consumer = FanOutConsumer(settings, app.state.db)
    try:
        await consumer.process_batch(consumer_records(batch))
        await consumer.process_batch(consumer_records(batch))  # redelivered after a crash
    finally:
        await consumer.close()
    queued = await rows(app, mine["id"])
    assert [(r["event_type"], json.loads(r["body"])["data"].get("new_status")) for r in queued] == [
        ("conversation.status_changed", "open"),
        ("conversation.opened", None),
        ("message.received", None),
        ("conversation.status_changed", "resolved"),
    ]
    assert [r["event_type"] for r in await rows(app, theirs["id"])] == ["message.received"]
    assert all(r["organization_id"] == org for r in queued)


async def test_later_deliveries_of_a_conversation_wait_parked_and_never_get_stuck(
    app, settings, client, tokens
):
    """Behind a pending delivery of its conversation a delivery is parked (the claim
    never reads it); the one before it being done another way than through the worker
    (here: by hand) still lets it go, in order (the worker's unpark sweep)."""
    from sqlalchemy import text, update

    from pytake_integrations.delivery import DeliveryWorker
    from pytake_integrations.tables import deliveries

    from .helpers import Receiver

    hook = await Receiver().start()
    try:
        org, conversation = uuid.uuid4(), uuid.uuid4()
        endpoint = await make_endpoint(client, tokens, org, hook.url)
        events = [inbound(org, conversation) for _ in range(3)]
        consumer = FanOutConsumer(settings, app.state.db)
        try:
            await consumer.process_batch(consumer_records(events))
        finally:
            await consumer.close()
        first = (await rows(app, endpoint["id"]))[0]
        async with app.state.db.transaction(bypass_rls=True) as s:
            parked = (
                (
                    await s.execute(
                        text(
                            "SELECT next_attempt_at = 'infinity' FROM deliveries "
                            "WHERE endpoint_id = :e ORDER BY seq"
                        ),
                        {"e": endpoint["id"]},
                    )
                )
                .scalars()
                .all()
            )
        assert parked == [False, True, True]
        async with app.state.db.transaction(bypass_rls=True) as s:
            await s.execute(
                update(deliveries).where(deliveries.c.id == first["id"]).values(status="failed")
            )
        worker = DeliveryWorker(settings, app.state.db, app.state.secret_box)
        try:
            await worker.drain()
        finally:
            await worker.close()
        got = [json.loads(r.body)["data"]["message_id"] for r in hook.got]
        assert got == [e.data["message_id"] for e in events[1:]]
    finally:
        await hook.stop()
