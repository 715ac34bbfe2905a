import json
import uuid

from aiokafka import AIOKafkaConsumer

from pytake_common.kafka import make_producer
from pytake_common.outbox import OutboxRelay


async def test_registration_event_reaches_the_broker_keyed_by_user(app, api, make_settings):
    body = await api.registered()
    settings = make_settings()
    relay = OutboxRelay(settings, app.state.db)
    producer = make_producer(settings)
    await producer.start()
    try:
        assert await relay.publish_batch(producer) == 1
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        "pytake.auth.user",
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        found = None
        for _ in range(40):
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    event = json.loads(record.value)
                    if event["subject"] == body["user"]["id"]:
                        found = (record, event)
            if found:
                break
    finally:
        await consumer.stop()
    assert found is not None
    record, event = found
    assert record.key == body["user"]["id"].encode()
    assert event["type"] == "pytake.auth.user.registered.v1"
    assert event["tenantid"] == body["user"]["organization_id"]
