"""CPU per record of the event consumers, a transaction per record vs batches.

Starts an embedded PostgreSQL and Tansu, publishes N ``message.received``
events (``--orgs`` organizations, ``--contacts`` customers each writing several
times) to the gateway's topic, then lets the real contacts and conversations
consumers (their own handlers, on their own freshly migrated databases, as the
non-owner ``pytake_app`` role) work off that backlog, once with
``consumer_batch_size=1`` (one transaction per record, what the consumer did
before batching) and once with the default batch size (``--batch``: the sizes to
run). For each run it prints the consumer's CPU (this process: aiokafka, handlers, SQLAlchemy) and
PostgreSQL's CPU (this server only) per record, and the records per second.
A backlog is the case batching is for: a consumer keeping up with a trickle
gets batches of one or two records and behaves like ``--batch 1``.

``--services tenants`` measures tenants' usage counting instead: what the same
inbound messages become for it (a ``message.appended`` each, and a
``contact.created`` and ``conversation.opened`` for each customer's first message;
``--n`` counts them all), handled by tenants' set-based handlers.

Usage: python bench/consumer_batch.py [--n 2000] [--batch 1,100] [--services contacts,conversations]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from _measure import cpu, infrastructure, postgres_cpu
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select

import pytake_contacts
import pytake_conversations
import pytake_tenants
from pytake_common import event_types
from pytake_common.consumer import EventConsumer, Handler
from pytake_common.db import Database
from pytake_common.events import CloudEvent
from pytake_common.ids import contact_id_for, message_id_for_wamid
from pytake_common.mechanics import processed_events
from pytake_common.migrations import upgrade
from pytake_common.settings import ServiceSettings, to_asyncpg_url
from pytake_contacts.handlers import HANDLERS as CONTACTS
from pytake_conversations.handlers import HANDLERS as CONVERSATIONS
from pytake_conversations.inbound_batch import RECEIVED_SET
from pytake_tenants.handlers import HANDLERS as TENANTS

PHONE_NUMBER_ID = "100200300"
SERVICES: dict[str, tuple[Path, dict[str, Handler]]] = {
    "contacts": (Path(pytake_contacts.__file__).parent / "migrations", CONTACTS),
    # as app.py wires it: message.received set-based
    "conversations": (
        Path(pytake_conversations.__file__).parent / "migrations",
        {**CONVERSATIONS, event_types.WHATSAPP_MESSAGE_RECEIVED_V1: RECEIVED_SET},
    ),
    "tenants": (Path(pytake_tenants.__file__).parent / "migrations", TENANTS),
}


def events(n: int, orgs: int, contacts: int) -> list[CloudEvent]:
    numbers = {i: uuid.uuid4() for i in range(orgs)}
    tenants = [uuid.uuid4() for _ in range(orgs)]
    out = []
    for i in range(n):
        o = i % orgs
        org, wa_id = tenants[o], f"55119{(i // orgs) % contacts:08d}"
        wamid = "wamid.HBgM" + uuid.uuid4().hex
        contact_id = contact_id_for(org, wa_id)
        data = {
            "message_id": str(message_id_for_wamid(PHONE_NUMBER_ID, wamid)),
            "wamid": wamid,
            "organization_id": str(org),
            "number_id": str(numbers[o]),
            "phone_number_id": PHONE_NUMBER_ID,
            "display_phone_number": "15550100",
            "contact_id": str(contact_id),
            "wa_id": wa_id,
            "user_id": None,
            "profile_name": f"Customer {wa_id[-4:]}",
            "type": "text",
            "text": f"message {i}",
            "content": {"from": wa_id, "id": wamid, "type": "text", "text": {"body": "hi"}},
            "timestamp": datetime.now(UTC).isoformat(),
        }
        out.append(
            CloudEvent(
                source="pytake/whatsapp-gateway",
                type=event_types.WHATSAPP_MESSAGE_RECEIVED_V1,
                subject=str(contact_id),
                tenantid=str(org),
                data=data,
            )
        )
    return out


def usage_events(n: int, orgs: int, contacts: int) -> list[CloudEvent]:
    """What tenants gets of inbound messages: ``n`` records in all."""
    tenants = [uuid.uuid4() for _ in range(orgs)]
    conversation_of: dict[uuid.UUID, uuid.UUID] = {}
    out: list[CloudEvent] = []

    def add(etype: str, org: uuid.UUID, subject: uuid.UUID, **data: object) -> None:
        out.append(
            CloudEvent(
                source="pytake/bench",
                type=etype,
                subject=str(subject),
                tenantid=str(org),
                data={"organization_id": str(org), **data},
            )
        )

    i = 0
    while len(out) < n:
        org, wa_id = tenants[i % orgs], f"55119{(i // orgs) % contacts:08d}"
        contact_id = contact_id_for(org, wa_id)
        now = datetime.now(UTC).isoformat()
        if contact_id not in conversation_of:
            conversation_of[contact_id] = uuid.uuid4()
            add(
                event_types.CONTACTS_CONTACT_CREATED_V1, org, contact_id, contact_id=str(contact_id)
            )
            add(
                event_types.CONVERSATIONS_CONVERSATION_OPENED_V1,
                org,
                conversation_of[contact_id],
                conversation_id=str(conversation_of[contact_id]),
                contact_id=str(contact_id),
                opened_at=now,
            )
        message_id = uuid.uuid4()
        add(
            event_types.CONVERSATIONS_MESSAGE_APPENDED_V1,
            org,
            message_id,
            message_id=str(message_id),
            conversation_id=str(conversation_of[contact_id]),
            contact_id=str(contact_id),
            direction="inbound",
            type="text",
            created_at=now,
        )
        i += 1
    return out[:n]


async def publish(bootstrap: str, batch: list[CloudEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(e.topic, e.to_bytes(), key=e.subject.encode()) for e in batch
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def wait_for_count(count: Callable[[], Awaitable[int]], at_least: int, every: float) -> int:
    while True:
        value = await count()
        if value >= at_least:
            return value
        await asyncio.sleep(every)


async def consume(
    pg_url: str,
    bootstrap: str,
    postmaster: psutil.Process,
    service: str,
    batch_size: int,
    n: int,
) -> tuple[float, float, float]:
    migrations, handlers = SERVICES[service]
    url = to_asyncpg_url(pg_url, database=f"bench_{service}_{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(upgrade, migrations, url, "pytake_app")
    settings = ServiceSettings(
        service_name=service,
        env="test",
        secret_key="x" * 40,
        kafka_bootstrap=bootstrap,
        consumer_batch_size=batch_size,
    )
    db = Database(url, app_role="pytake_app")
    consumer = EventConsumer(settings, db, f"bench-{uuid.uuid4().hex[:8]}", handlers)

    async def done() -> int:
        async with db.transaction() as s:
            return int(await s.scalar(select(func.count()).select_from(processed_events)) or 0)

    stop = asyncio.Event()
    me = psutil.Process()
    task = asyncio.create_task(consumer.run(stop))
    await consumer.ready.wait()
    # From the first record on: group join and migrations are not the consumer's work.
    first = await wait_for_count(done, 1, 0.02)
    start, pg_start, wall_start = cpu(me), postgres_cpu(postmaster), time.monotonic()
    # Polled rarely: each poll is a transaction of this process, counted with the rest.
    count = await wait_for_count(done, n, 0.25)
    wall = time.monotonic() - wall_start
    used, pg_used = cpu(me) - start, postgres_cpu(postmaster) - pg_start
    stop.set()
    await asyncio.wait_for(task, 30)
    await db.dispose()
    handled = count - first
    return used / handled * 1000, pg_used / handled * 1000, handled / wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument(
        "--batch",
        default=f"1,{ServiceSettings().consumer_batch_size}",
        help="the consumer batch sizes to run, comma-separated",
    )
    parser.add_argument("--orgs", type=int, default=20)
    parser.add_argument("--contacts", type=int, default=25, help="customers per organization")
    parser.add_argument("--services", default="contacts,conversations")
    args = parser.parse_args()
    services = args.services.split(",")
    with infrastructure("consumer") as infra:
        postmaster = infra.postmaster
        if postmaster is None:
            sys.exit("consumer_batch measures the embedded PostgreSQL: unset PYTAKE_DATABASE_URL")
        pg_url, bootstrap = infra.pg_url, infra.bootstrap
        if "tenants" in services:
            asyncio.run(publish(bootstrap, usage_events(args.n, args.orgs, args.contacts)))
            print(f"{args.n} usage records backlogged for tenants (see --help)")
        if set(services) - {"tenants"}:
            asyncio.run(publish(bootstrap, events(args.n, args.orgs, args.contacts)))
            print(f"{args.n} message.received records backlogged")
        print(
            f"({args.orgs} organizations, {args.contacts} customers each); "
            "CPU per record, consumer process and PostgreSQL:"
        )
        for service in services:
            for batch in [int(b) for b in args.batch.split(",")]:
                own, pgc, rate = asyncio.run(
                    consume(pg_url, bootstrap, postmaster, service, batch, args.n)
                )
                print(
                    f"  {service:14} batch {batch:>4}: consumer {own:6.2f} ms  "
                    f"postgres {pgc:6.2f} ms  sum {own + pgc:6.2f} ms  {rate:7.1f} records/s"
                )


if __name__ == "__main__":
    main()
