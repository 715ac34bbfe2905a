"""The running service: send requests arrive over a real Kafka-protocol broker."""

import asyncio
import json
import uuid

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pytake_devstack.tokens import TokenFactory
from pytake_whatsapp_gateway.app import create_app

from .helpers import register
from .test_sending import send_requested


async def test_the_worker_sends_a_requested_message_and_publishes_the_outcome(
    settings, kafka_bootstrap, graph
):
    worker_settings = settings.model_copy(
        update={
            "run_workers": True,
            "kafka_bootstrap": kafka_bootstrap,
            "kafka_consumer_session_timeout_ms": 6000,
            "kafka_consumer_heartbeat_ms": 500,
            "outbox_poll_interval_s": 0.2,
        }
    )
    app = create_app(worker_settings)
    tokens = TokenFactory()
    tokens.install(app)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://whatsapp-gateway"
    ) as client:
        number = await register(client, tokens, uuid.uuid4(), str(uuid.uuid4().int)[:15])
    event = send_requested(number)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            "pytake.conversations.message", event.to_bytes(), key=event.subject.encode()
        )
    finally:
        await producer.stop()

    outcomes = AIOKafkaConsumer(
        "pytake.whatsapp.message",
        bootstrap_servers=kafka_bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        metadata_max_age_ms=1000,
    )
    async with app.router.lifespan_context(app):
        await outcomes.start()
        try:
            published = await asyncio.wait_for(_outcome_of(outcomes, event.subject), 60)
        finally:
            await outcomes.stop()
    assert published["type"] == "pytake.whatsapp.message.sent.v1"
    assert published["data"]["wamid"].startswith("wamid.")
    assert len(graph.requests) == 1


async def _outcome_of(consumer: AIOKafkaConsumer, message_id: str) -> dict:
    async for record in consumer:
        published = json.loads(record.value)
        if published["data"].get("message_id") == message_id:
            return published
    raise AssertionError("consumer stopped")
