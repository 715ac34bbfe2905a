"""The running service over a real Kafka-protocol broker: registration in, organization out."""

import asyncio
import json
import uuid

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI

from pytake_devstack.tokens import TokenFactory
from pytake_tenants.app import create_app

from .helpers import registered


def _running(settings, **extra) -> tuple[FastAPI, TokenFactory]:
    """The service with its workers (consumer, relay) on the suite's broker."""
    app = create_app(
        settings.model_copy(
            update={
                "run_workers": True,
                "kafka_consumer_session_timeout_ms": 6000,
                "kafka_consumer_heartbeat_ms": 500,
                "outbox_poll_interval_s": 0.2,
                **extra,
            }
        )
    )
    tokens = TokenFactory()
    tokens.install(app)
    return app, tokens


async def _created(consumer: AIOKafkaConsumer, org: uuid.UUID) -> dict:
    async for record in consumer:
        event = json.loads(record.value)
        if event["type"].endswith("organization.created.v1") and event["subject"] == str(org):
            return event
    raise AssertionError("consumer stopped")


async def test_registration_over_the_broker_creates_and_announces_the_organization(
    settings, kafka_bootstrap
):
    app, tokens = _running(settings)
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


async def test_reading_the_organization_right_after_the_registration_event(
    settings, kafka_bootstrap
):
    """A client that signs up and reads its organization at once gets it (no 404)."""
    app, tokens = _running(settings, organization_wait_s=5.0)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://tenants"
            ) as client,
        ):
            # Warm-up: the consumer has joined its group once a first organization shows.
            warm = uuid.uuid4()
            await producer.send_and_wait("pytake.auth.user", registered(warm).to_bytes())
            for _ in range(120):
                r = await client.get(
                    "/v1/organizations/me", headers=tokens.headers(organization_id=warm)
                )
                if r.status_code == 200:
                    break
            assert r.status_code == 200, r.text
            for _ in range(3):
                org = uuid.uuid4()
                event = registered(org, "Right Away")
                await producer.send_and_wait("pytake.auth.user", event.to_bytes(), key=b"k")
                headers = tokens.headers(organization_id=org)
                me, usage = await asyncio.gather(
                    client.get("/v1/organizations/me", headers=headers),
                    client.get("/v1/organizations/me/usage", headers=headers),
                )
                assert me.status_code == 200 and me.json()["name"] == "Right Away", me.text
                assert usage.status_code == 200, usage.text
    finally:
        await producer.stop()
