"""The running service over a real Kafka-protocol broker: registration in, organization out."""

import asyncio
import json
import uuid

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pytake_devstack.tokens import TokenFactory
from pytake_tenants.app import create_app

from .support import registered


async def _created(consumer: AIOKafkaConsumer, org: uuid.UUID) -> dict:
    async for record in consumer:
        event = json.loads(record.value)
        if event["type"].endswith("organization.created.v1") and event["subject"] == str(org):
            return event
    raise AssertionError("consumer stopped")


async def test_registration_over_the_broker_creates_and_announces_the_organization(
    settings, kafka_bootstrap
):
    worker_settings = settings.model_copy(
        update={
            "run_workers": True,
            "kafka_consumer_session_timeout_ms": 6000,
            "kafka_consumer_heartbeat_ms": 500,
            "outbox_poll_interval_s": 0.2,
        }
    )
    app = create_app(worker_settings)
    tokens = TokenFactory()
    tokens.install(app)
    org = uuid.uuid4()
    event = registered(org, "Broker Co")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for _ in range(2):  # delivered twice: handled once
            await producer.send_and_wait("pytake.auth.user", event.to_bytes(), key=b"k")
    finally:
        await producer.stop()
    announcements = AIOKafkaConsumer(
        "pytake.tenants.organization",
        bootstrap_servers=kafka_bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        metadata_max_age_ms=1000,
    )
    async with app.router.lifespan_context(app):
        await announcements.start()
        try:
            created = await asyncio.wait_for(_created(announcements, org), 60)
        finally:
            await announcements.stop()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://tenants"
        ) as client:
            r = await client.get(
                "/v1/organizations/me", headers=tokens.headers(organization_id=org)
            )
    assert created["data"]["slug"] == "broker-co"
    assert created["data"]["limits"]["agents"] == 2
    assert r.status_code == 200 and r.json()["name"] == "Broker Co"
