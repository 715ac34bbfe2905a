"""CPU per campaign send of conversations' consumer: ``recipient.dispatched`` and the
four status events that follow each send (issue #16).

Starts an embedded PostgreSQL (no broker: records are handed to the real
``EventConsumer.process_batch`` as the consumer would after a fetch, inbox marks and all),
migrates a conversations database, fills its replicas (a number, an approved UTILITY
template, ``--n`` contacts), then handles, in batches of ``--batch`` records:

1. ``--n`` ``campaigns.recipient.dispatched`` (new conversations, template messages);
2. for each message, whatsapp-gateway's ``message.sent`` and Meta's ``sent``,
   ``delivered`` (with pricing) and ``read`` status webhooks (``message.status_updated``),
   interleaved across messages as a draining campaign sends them.

With ``--service campaigns``: campaigns' consumer instead, on a campaign of ``--n``
dispatched recipients (inserted directly), the events conversations sends it per
message: ``conversation.opened``, ``message.send_requested``, ``message.appended``, and
``message.status_changed`` sent, delivered (with pricing) and read.

With ``--service dispatcher``: campaigns' dispatcher, one tick at a time (``--n`` ticks)
on a running campaign whose in-flight window is full (80 dispatched, 1,000 queued: what
each tick finds while a campaign drains slower than its rate), CPU per tick.

For each phase it prints this process's CPU (consumer, handlers, SQLAlchemy/asyncpg) and
PostgreSQL's per send. The same script runs on any checkout (it uses the service's
own handlers), so old and new code compare on the same box, interleaved.

Usage: python bench/campaign_consumers.py [--n 600] [--batch 20] [--rounds 1]
       [--service conversations|campaigns|dispatcher]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import psutil
from _measure import box, cpu, infrastructure, postgres_cpu
from aiokafka.structs import ConsumerRecord
from cpu_per_message import print_statements, reset_statements, statements_option
from sqlalchemy import select

import pytake_campaigns
import pytake_conversations
from pytake_common import event_types as et
from pytake_common import rawpg
from pytake_common.consumer import EventConsumer
from pytake_common.db import Database
from pytake_common.events import CloudEvent
from pytake_common.ids import contact_id_for
from pytake_common.migrations import upgrade
from pytake_common.pgtenant import to_asyncpg_url
from pytake_common.settings import ServiceSettings
from pytake_conversations.campaign_sends import campaign_handlers
from pytake_conversations.handlers import HANDLERS
from pytake_conversations.tables import messages

#: ``--statements N``: pg_stat_statements over each measured phase, its N statements of
#: most execution time and each database's N of most calls (0: not loaded)
STATEMENTS = 0


async def statements_before(pg_url: str) -> None:
    if STATEMENTS:
        await reset_statements(pg_url)


async def statements_after(pg_url: str, n: int) -> None:
    if STATEMENTS:
        await print_statements(pg_url, n, STATEMENTS, unit="send", per_database=True)


MIGRATIONS = Path(pytake_conversations.__file__).parent / "migrations"
CAMPAIGN_MIGRATIONS = Path(pytake_campaigns.__file__).parent / "migrations"
WABA, PHONE_NUMBER_ID = "waba-bench", "106540352242922"


def event(
    source: str, etype: str, org: uuid.UUID, data: dict[str, Any], subject: str
) -> CloudEvent:
    return CloudEvent(
        source=f"pytake/{source}",
        type=etype,
        subject=subject,
        tenantid=str(org),
        data={"organization_id": str(org), **data},
    )


def record(e: CloudEvent, offset: int) -> ConsumerRecord[Any, Any]:
    value = e.model_dump_json().encode()
    return ConsumerRecord(
        topic=e.topic if hasattr(e, "topic") else "bench",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=[],
    )


def replicas(
    org: uuid.UUID, number_id: uuid.UUID, n: int
) -> tuple[list[CloudEvent], list[uuid.UUID]]:
    now = datetime.now(UTC).isoformat()
    out = [
        event(
            "whatsapp-gateway",
            et.WHATSAPP_NUMBER_REGISTERED_V1,
            org,
            {
                "number_id": str(number_id),
                "phone_number_id": PHONE_NUMBER_ID,
                "waba_id": WABA,
                "display_phone_number": "15550100",
            },
            str(number_id),
        ),
        event(
            "whatsapp-gateway",
            et.WHATSAPP_TEMPLATE_STATUS_CHANGED_V1,
            org,
            {
                "template_id": str(uuid.uuid4()),
                "number_id": None,
                "waba_id": WABA,
                "name": "order_update",
                "language": "en_US",
                "category": "UTILITY",
                "status": "APPROVED",
                "components": [{"type": "BODY", "text": "Hi {{1}}, your order {{2}} ships."}],
            },
            "order_update",
        ),
    ]
    contacts = []
    for i in range(n):
        wa_id = f"5511{i:09d}"
        contact_id = contact_id_for(org, wa_id)
        contacts.append(contact_id)
        data = {
            "contact_id": str(contact_id),
            "name": f"Customer {i}",
            "phone": "+" + wa_id,
            "wa_id": wa_id,
            "user_id": None,
            "attributes": {"order": f"A-{i}"},
            "created_at": now,
        }
        out.append(event("contacts", et.CONTACTS_CONTACT_CREATED_V1, org, data, str(contact_id)))
    return out, contacts


def dispatched(org: uuid.UUID, number_id: uuid.UUID, contacts: list[uuid.UUID]) -> list[CloudEvent]:
    campaign = uuid.uuid4()
    return [
        event(
            "campaigns",
            et.CAMPAIGNS_RECIPIENT_DISPATCHED_V1,
            org,
            {
                "campaign_id": str(campaign),
                "recipient_id": str(recipient),
                "contact_id": str(contact),
                "number_id": str(number_id),
                "template": {"name": "order_update", "language": "en_US", "category": "UTILITY"},
                "parameters": {"parameters": ["{{contact.name}}", "{{contact.attributes.order}}"]},
            },
            str(recipient),
        )
        for contact in contacts
        for recipient in [uuid.uuid4()]
    ]


def statuses(
    org: uuid.UUID, number_id: uuid.UUID, ids: list[uuid.UUID], lag: int
) -> list[CloudEvent]:
    """message.sent, then Meta's sent/delivered/read, each message's ``lag`` sends apart
    (a draining campaign: the n-th send's read arrives with later sends' sent)."""
    at = datetime.now(UTC)
    steps: list[tuple[int, CloudEvent]] = []
    pricing = {"billable": True, "pricing_model": "PMP", "category": "utility"}
    for i, message_id in enumerate(ids):
        wamid = f"wamid.bench{message_id.hex}"
        sent = event(
            "whatsapp-gateway",
            et.WHATSAPP_MESSAGE_SENT_V1,
            org,
            {
                "message_id": str(message_id),
                "wamid": wamid,
                "number_id": str(number_id),
                "to": "5511",
                "sent_at": at.isoformat(),
            },
            str(message_id),
        )
        steps.append((i, sent))
        for k, name in enumerate(("sent", "delivered", "read"), start=1):
            data: dict[str, Any] = {
                "message_id": None,
                "wamid": wamid,
                "number_id": str(number_id),
                "status": name,
                "timestamp": (at + timedelta(seconds=k)).isoformat(),
                "recipient_id": "5511",
                "errors": [],
            }
            if name != "read":
                data["pricing"] = pricing
            steps.append(
                (
                    i + k * lag,
                    event(
                        "whatsapp-gateway", et.WHATSAPP_MESSAGE_STATUS_UPDATED_V1, org, data, wamid
                    ),
                )
            )
    steps.sort(key=lambda s: s[0])
    return [e for _, e in steps]


async def run(pg_url: str, postmaster: psutil.Process, n: int, batch: int) -> None:
    url = to_asyncpg_url(pg_url, database=f"bench_conv_{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(upgrade, MIGRATIONS, url, "pytake_app")
    settings = ServiceSettings(
        service_name="conversations", env="test", secret_key="x" * 40, kafka_bootstrap="-"
    )
    db = Database(url, app_role="pytake_app")
    handlers = {**HANDLERS, **campaign_handlers()}
    consumer = EventConsumer(settings, db, "bench", handlers)
    org, number_id = uuid.uuid4(), uuid.uuid4()
    offset = 0

    async def feed(events: list[CloudEvent], size: int) -> tuple[float, float, float]:
        nonlocal offset
        await statements_before(pg_url)
        me = psutil.Process()
        start, pg_start, wall = cpu(me), postgres_cpu(postmaster), time.monotonic()
        for i in range(0, len(events), size):
            chunk = events[i : i + size]
            await consumer.process_batch([record(e, offset + j) for j, e in enumerate(chunk)])
            offset += len(chunk)
        return cpu(me) - start, postgres_cpu(postmaster) - pg_start, time.monotonic() - wall

    seed, contacts = replicas(org, number_id, n)
    await feed(seed, 200)
    own, pg, wall = await feed(dispatched(org, number_id, contacts), batch)
    print(
        f"  recipient.dispatched x{n}, batch {batch}: consumer {own / n * 1000:6.2f} ms  "
        f"postgres {pg / n * 1000:6.2f} ms  per send ({wall:.1f} s)"
    )
    await statements_after(pg_url, n)
    async with db.transaction(organization_id=org) as s:
        ids = list(
            (
                await s.execute(
                    select(messages.c.id).order_by(messages.c.created_at, messages.c.id)
                )
            ).scalars()
        )
    assert len(ids) == n, f"{len(ids)} messages for {n} recipients"
    facts = statuses(org, number_id, ids, lag=max(batch, 1))
    own, pg, wall = await feed(facts, batch)
    print(
        f"  4 statuses per send x{n}, batch {batch}: consumer {own / n * 1000:6.2f} ms  "
        f"postgres {pg / n * 1000:6.2f} ms  per send ({wall:.1f} s)"
    )
    await statements_after(pg_url, n)
    async with db.transaction(organization_id=org) as s:
        read = (await s.execute(select(messages.c.status).where(messages.c.status == "read"))).all()
    assert len(read) == n, f"{len(read)} of {n} messages read"
    await db.dispose()


def progress(
    org: uuid.UUID, number_id: uuid.UUID, recipients: list[tuple[uuid.UUID, uuid.UUID]], lag: int
) -> list[CloudEvent]:
    """What conversations tells campaigns about each recipient's message, the statuses
    ``lag`` messages behind (as they come while a campaign drains)."""
    at = datetime.now(UTC)
    steps: list[tuple[int, CloudEvent]] = []
    pricing = {"billable": True, "pricing_model": "PMP", "category": "utility"}
    for i, (recipient, contact) in enumerate(recipients):
        message, conversation = uuid.uuid4(), uuid.uuid4()
        common = {"message_id": str(message), "conversation_id": str(conversation)}
        src = "conversations"
        steps.append(
            (
                i,
                event(
                    src,
                    et.CONVERSATIONS_CONVERSATION_OPENED_V1,
                    org,
                    {
                        "conversation_id": str(conversation),
                        "contact_id": str(contact),
                        "number_id": str(number_id),
                        "opened_at": at.isoformat(),
                        "started_by": str(uuid.uuid4()),
                    },
                    str(conversation),
                ),
            )
        )
        steps.append(
            (
                i,
                event(
                    src,
                    et.CONVERSATIONS_MESSAGE_SEND_REQUESTED_V1,
                    org,
                    {
                        **common,
                        "number_id": str(number_id),
                        "phone_number_id": PHONE_NUMBER_ID,
                        "to": "5511",
                        "type": "template",
                        "context_wamid": None,
                        "requested_by": str(uuid.uuid4()),
                        "priority": "campaign",
                        "recipient_id": str(recipient),
                    },
                    str(conversation),
                ),
            )
        )
        steps.append(
            (
                i,
                event(
                    src,
                    et.CONVERSATIONS_MESSAGE_APPENDED_V1,
                    org,
                    {
                        **common,
                        "contact_id": str(contact),
                        "direction": "outbound",
                        "type": "template",
                        "created_at": at.isoformat(),
                        "sender_type": "campaign",
                        "recipient_id": str(recipient),
                    },
                    str(message),
                ),
            )
        )
        for k, name in enumerate(("sent", "delivered", "read"), start=1):
            data = {
                **common,
                "status": name,
                "error_code": None,
                "error_detail": None,
                "at": (at + timedelta(seconds=k)).isoformat(),
                "pricing": pricing if name == "delivered" else None,
            }
            steps.append(
                (
                    i + k * lag,
                    event(src, et.CONVERSATIONS_MESSAGE_STATUS_CHANGED_V1, org, data, str(message)),
                )
            )
    steps.sort(key=lambda s: s[0])
    return [e for _, e in steps]


_CAMPAIGN = """
INSERT INTO campaigns (id, organization_id, name, number_id, template, audience, status, started_at)
VALUES ($1, $2, 'bench', $3, '{"name": "order_update", "language": "en_US"}'::jsonb, '{}'::jsonb,
        'running', now())
"""
_RECIPIENTS = """
INSERT INTO campaign_recipients (id, organization_id, campaign_id, contact_id, number_id, status,
                                 dispatched_at)
SELECT r.id, $1, $2, r.contact_id, $3, 'dispatched', now()
FROM unnest($4::uuid[], $5::uuid[]) AS r(id, contact_id)
"""


async def run_campaigns(pg_url: str, postmaster: psutil.Process, n: int, batch: int) -> None:
    from pytake_campaigns.config import Settings
    from pytake_campaigns.handlers import handlers

    url = to_asyncpg_url(pg_url, database=f"bench_camp_{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(upgrade, CAMPAIGN_MIGRATIONS, url, "pytake_app")
    settings = Settings(env="test", secret_key="x" * 40, kafka_bootstrap="-")
    db = Database(url, app_role="pytake_app")
    consumer = EventConsumer(settings, db, "bench", handlers(settings))
    org, number_id, campaign = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    recipients = [(uuid.uuid4(), uuid.uuid4()) for _ in range(n)]
    async with db.transaction(organization_id=org) as s:
        conn = await rawpg.driver(s)
        await conn.execute(_CAMPAIGN, campaign, org, number_id)
        await conn.execute(
            _RECIPIENTS,
            org,
            campaign,
            number_id,
            [r for r, _ in recipients],
            [c for _, c in recipients],
        )
    events = progress(org, number_id, recipients, lag=max(batch, 1))
    await statements_before(pg_url)
    me = psutil.Process()
    start, pg_start, wall = cpu(me), postgres_cpu(postmaster), time.monotonic()
    for i in range(0, len(events), batch):
        chunk = events[i : i + batch]
        await consumer.process_batch([record(e, i + j) for j, e in enumerate(chunk)])
    own, pg, took = cpu(me) - start, postgres_cpu(postmaster) - pg_start, time.monotonic() - wall
    print(
        f"  campaigns: 6 events per send x{n}, batch {batch}: consumer {own / n * 1000:6.2f} ms  "
        f"postgres {pg / n * 1000:6.2f} ms  per send ({took:.1f} s)"
    )
    await statements_after(pg_url, n)
    async with db.transaction(organization_id=org) as s:
        conn = await rawpg.driver(s)
        read = await conn.fetchval(
            "SELECT count(*) FROM campaign_recipients WHERE status = 'read' AND cost > 0"
        )
    assert read == n, f"{read} of {n} recipients read and priced"
    await db.dispose()


async def run_dispatcher(pg_url: str, postmaster: psutil.Process, n: int, batch: int) -> None:
    from pytake_campaigns.config import Settings
    from pytake_campaigns.dispatcher import Dispatcher

    url = to_asyncpg_url(pg_url, database=f"bench_disp_{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(upgrade, CAMPAIGN_MIGRATIONS, url, "pytake_app")
    settings = Settings(env="test", secret_key="x" * 40, kafka_bootstrap="-")
    db = Database(url, app_role="pytake_app")
    org, number_id, campaign = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    flying = [(uuid.uuid4(), uuid.uuid4()) for _ in range(80)]
    queued = [(uuid.uuid4(), uuid.uuid4()) for _ in range(1000)]
    async with db.transaction(organization_id=org) as s:
        conn = await rawpg.driver(s)
        await conn.execute(
            "INSERT INTO number_replicas (id, organization_id, status, throughput_per_second)"
            " VALUES ($1, $2, 'connected', 80)",
            number_id,
            org,
        )
        await conn.execute(_CAMPAIGN, campaign, org, number_id)
        await conn.execute(
            _RECIPIENTS, org, campaign, number_id, [r for r, _ in flying], [c for _, c in flying]
        )
        await conn.execute(
            _RECIPIENTS.replace("'dispatched', now()", "'queued', NULL"),
            org,
            campaign,
            number_id,
            [r for r, _ in queued],
            [c for _, c in queued],
        )
    dispatcher = Dispatcher(settings, db)
    await statements_before(pg_url)
    me = psutil.Process()
    start, pg_start, wall = cpu(me), postgres_cpu(postmaster), time.monotonic()
    released = 0
    for _ in range(n):
        released += await dispatcher.tick()
    own, pg, took = cpu(me) - start, postgres_cpu(postmaster) - pg_start, time.monotonic() - wall
    print(
        f"  dispatcher, window full: {n} ticks, {released} released: "
        f"dispatcher {own / n * 1000:6.2f} ms  postgres {pg / n * 1000:6.2f} ms  per tick"
        f" ({took:.1f} s)"
    )
    await statements_after(pg_url, n)
    await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--service", default="conversations", choices=("conversations", "campaigns", "dispatcher")
    )
    statements_option(parser, "send")
    args = parser.parse_args()
    global STATEMENTS
    STATEMENTS = args.statements
    print(box())
    with infrastructure(
        "campaign-consumers", broker=False, statements=bool(args.statements)
    ) as infra:
        postmaster = infra.postmaster
        if postmaster is None:
            sys.exit(
                "campaign_consumers measures the embedded PostgreSQL: unset PYTAKE_DATABASE_URL"
            )
        for _ in range(args.rounds):
            measure = {"conversations": run, "campaigns": run_campaigns}.get(
                args.service, run_dispatcher
            )
            asyncio.run(measure(infra.pg_url, postmaster, args.n, args.batch))
        print(f"load average: {' '.join(f'{x:.2f}' for x in psutil.getloadavg())}")


if __name__ == "__main__":
    main()
