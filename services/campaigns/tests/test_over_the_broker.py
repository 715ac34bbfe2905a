"""The running service on a real Kafka-protocol broker: other services' events in, a
campaign's recipients out on ``pytake.campaigns.recipient``, their progress back in."""

import asyncio
import json
import uuid

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import func, select

from pytake_campaigns.app import create_app
from pytake_campaigns.tables import contact_replicas, contact_tags
from pytake_common import event_types as et
from pytake_devstack.tokens import TokenFactory

from .helpers import (
    World,
    consent,
    contact_created,
    number_registered,
    send_requested,
    status_changed,
    tag_created,
    tagged,
    template_event,
)


async def _wait_for(check, timeout=30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.2)


async def test_a_campaign_end_to_end_over_the_broker(settings, kafka_bootstrap):
    app = create_app(
        settings.model_copy(
            update={
                "run_workers": True,
                "outbox_poll_interval_s": 0.2,
                "kafka_consumer_fetch_max_wait_ms": 100,
            }
        )
    )
    tokens = TokenFactory()
    tokens.install(app)
    w = World()
    org = w.org
    world = [
        number_registered(org, w.number, throughput=20),
        template_event(org),
        tag_created(org, w.tag),
    ]
    for _ in range(5):
        cid = uuid.uuid4()
        w.contacts.append(cid)
        world += [contact_created(org, cid), tagged(org, cid, w.tag), consent(org, cid)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    dispatched = AIOKafkaConsumer(
        et.CAMPAIGNS_RECIPIENT_TOPIC,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        metadata_max_age_ms=1000,
    )
    await producer.start()
    try:
        async with app.router.lifespan_context(app):
            for event in world:
                await producer.send_and_wait(
                    event.topic, event.to_bytes(), key=event.subject.encode()
                )
            headers = tokens.headers(organization_id=org)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://campaigns"
            ) as client:

                async def created():
                    async with app.state.db.transaction(bypass_rls=True) as s:
                        ready = await s.scalar(
                            select(func.count()).where(
                                contact_tags.c.organization_id == org,
                                contact_replicas.c.id == contact_tags.c.contact_id,
                                contact_replicas.c.marketing_opt_in,
                            )
                        )
                    if ready != len(w.contacts):
                        return None
                    r = await client.post("/v1/campaigns", json=w.body(), headers=headers)
                    return r.json() if r.status_code == 201 else None

                campaign = await _wait_for(created)  # once the replicas caught up
                await _wait_for(lambda: _started(client, headers, campaign["id"], len(w.contacts)))
                await dispatched.start()
                seen: dict[str, dict] = {}
                try:
                    async with asyncio.timeout(60):
                        async for record in dispatched:
                            event = json.loads(record.value)
                            if event["data"]["campaign_id"] == campaign["id"]:
                                assert record.key.decode() == event["subject"]
                                seen[event["data"]["recipient_id"]] = event
                            if len(seen) == len(w.contacts):
                                break
                finally:
                    await dispatched.stop()
                assert {e["data"]["contact_id"] for e in seen.values()} == {
                    str(c) for c in w.contacts
                }
                # conversations sends each one; Meta delivers
                for recipient_id in seen:
                    message, conversation = uuid.uuid4(), uuid.uuid4()
                    for event in (
                        send_requested(org, uuid.UUID(recipient_id), message, conversation),
                        status_changed(org, message, conversation, "sent"),
                        status_changed(org, message, conversation, "delivered"),
                    ):
                        await producer.send_and_wait(
                            event.topic, event.to_bytes(), key=event.subject.encode()
                        )

                async def completed():
                    r = await client.get(f"/v1/campaigns/{campaign['id']}/stats", headers=headers)
                    stats = r.json()
                    return stats if stats["status"] == "completed" else None

                stats = await _wait_for(completed)
    finally:
        await producer.stop()
    assert stats["by_status"]["delivered"] == len(w.contacts)


async def _started(client, headers, campaign_id, expected):
    r = await client.post(f"/v1/campaigns/{campaign_id}/start", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["recipients_total"] == expected
    return True
