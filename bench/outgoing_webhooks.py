"""Outgoing webhooks: latency from an event's publication to the receiver, and isolation.

Starts an embedded PostgreSQL and Tansu, a migrated integrations database and the real
integrations app with its workers (consumer, delivery worker, relay), and ``--endpoints``
receivers (aiohttp servers on loopback) subscribed to ``message.received``. It then
publishes conversations' ``message.appended`` events (inbound, over ``--conversations``
conversations) to Kafka at ``--rate`` per second for ``--seconds``, stamped when sent, and
prints the p50/p95/p99 of "published -> the receiver has the signed POST". The clock starts
when the record is produced, i.e. after the source service's commit and outbox relay: add
that hop's figure (``bench/stream_latency.py`` measures it) for commit -> receiver.

``--hang`` adds one more endpoint whose receiver never answers (each attempt times out
after ``PYTAKE_DELIVERY_TIMEOUT_S``): the figures are then the other endpoints', so the
difference from a run without it is how much a hanging receiver delays the others.

Everything runs in this one process beside PostgreSQL and Tansu, on the same cores.

Usage: python bench/outgoing_webhooks.py [--rate 100] [--seconds 20] [--endpoints 5] [--hang]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import httpx
from _measure import infrastructure, pct
from aiohttp import web
from aiokafka import AIOKafkaProducer
from sqlalchemy import select

import pytake_integrations
from pytake_common import event_types
from pytake_common.events import CloudEvent
from pytake_devstack.pytest_plugin import migrated_database
from pytake_devstack.tokens import TokenFactory
from pytake_integrations.app import create_app
from pytake_integrations.config import Settings
from pytake_integrations.tables import deliveries

MIGRATIONS = Path(pytake_integrations.__file__).parent / "migrations"


class Receivers:
    """Loopback receivers; ``arrived[message_id]`` holds each endpoint's arrival times."""

    def __init__(self) -> None:
        self.arrived: dict[str, list[float]] = {}
        self.runners: list[web.AppRunner] = []

    async def start(self, hang: bool = False) -> str:
        async def ok(request: web.Request) -> web.Response:
            body = json.loads(await request.read())
            self.arrived.setdefault(body["data"]["message_id"], []).append(time.time())
            return web.Response(status=204)

        async def never(request: web.Request) -> web.Response:
            await asyncio.sleep(3600)
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", never if hang else ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


def appended(org: uuid.UUID, conversation: uuid.UUID) -> CloudEvent:
    message = uuid.uuid4()
    return CloudEvent(
        source="pytake/conversations",
        type=event_types.CONVERSATIONS_MESSAGE_APPENDED_V1,
        subject=str(message),
        tenantid=str(org),
        data={
            "organization_id": str(org),
            "message_id": str(message),
            "conversation_id": str(conversation),
            "contact_id": str(uuid.uuid4()),
            "direction": "inbound",
            "type": "text",
            "created_at": datetime.now(UTC).isoformat(),
        },
    )


async def run(args: argparse.Namespace, pg_url: str, bootstrap: str) -> None:
    url = await migrated_database(pg_url, "integrations", MIGRATIONS)
    settings = Settings(
        own_database_url=url,
        kafka_bootstrap=bootstrap,
        env="test",
        webhooks_allow_loopback=True,
        kafka_consumer_fetch_max_wait_ms=100,
        delivery_timeout_s=args.timeout,
        log_level="WARNING",
    )
    app = create_app(settings)
    tokens = TokenFactory()
    tokens.install(app)
    receivers = Receivers()
    org = uuid.uuid4()
    headers = tokens.headers(organization_id=org)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            targets = [await receivers.start() for _ in range(args.endpoints)]
            if args.hang:
                targets.append(await receivers.start(hang=True))
            for target in targets:
                r = await client.post(
                    "/v1/webhook-endpoints",
                    json={"url": target, "event_types": ["message.received"]},
                    headers=headers,
                )
                r.raise_for_status()
        await asyncio.sleep(3)  # the consumer joins its group
        conversations = [uuid.uuid4() for _ in range(args.conversations)]
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        await producer.start()
        sent: dict[str, float] = {}
        try:
            total = int(args.rate * args.seconds)
            start = time.monotonic()
            for i in range(total):
                event = appended(org, conversations[i % len(conversations)])
                delay = start + i / args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[event.data["message_id"]] = time.time()
                await producer.send(event.topic, event.to_bytes(), key=event.subject.encode())
            await producer.flush()
        finally:
            await producer.stop()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(len(v) for v in receivers.arrived.values()) >= len(sent) * args.endpoints:
                break
            await asyncio.sleep(0.2)
        await receivers.stop()
        async with app.state.db.transaction(bypass_rls=True) as session:
            queued = (
                await session.execute(select(deliveries.c.body, deliveries.c.created_at))
            ).all()
    # where the time goes: published -> queued (consumer), queued -> receiver (delivery)
    queued_at = {json.loads(body)["data"]["message_id"]: at.timestamp() for body, at in queued}
    to_queue = [(queued_at[m] - sent[m]) * 1000 for m in queued_at if m in sent]
    latencies = [
        (arrival - sent[m]) * 1000 for m, times in receivers.arrived.items() for arrival in times
    ]
    expected = len(sent) * args.endpoints
    print(
        f"rate {args.rate}/s for {args.seconds}s to {args.endpoints} endpoints"
        f"{' + 1 hanging' if args.hang else ''}: {len(latencies)}/{expected} deliveries; "
        f"published -> receiver ms p50 {pct(latencies, 50):.1f} "
        f"p95 {pct(latencies, 95):.1f} p99 {pct(latencies, 99):.1f} "
        f"max {max(latencies):.1f}; of which published -> queued p50 {pct(to_queue, 50):.1f} "
        f"p95 {pct(to_queue, 95):.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args()
    with infrastructure("webhooks") as infra:
        asyncio.run(run(args, infra.pg_url, infra.bootstrap))


if __name__ == "__main__":
    main()
