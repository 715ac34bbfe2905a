"""Statements and CPU per inbound message on the two hot paths, in one process.

Starts an embedded PostgreSQL, migrates whatsapp-gateway's and conversations'
databases (non-owner ``pytake_app`` role, as the services run) and drives, in
this process and one at a time:

* the webhook intake (``WebhookIntake.receive``, the acknowledgement path): N
  signed single-message webhooks from 50 customers to one number;
* conversations' ``message.received`` handler, each event in its own
  transaction bound to the tenant (what the consumer does with a batch of one):
  N messages of 50 customers whose conversations are already open.

For each it prints the SQL statements per message (counted by SQLAlchemy; each
transaction adds BEGIN and COMMIT), this process's CPU and PostgreSQL's CPU
(this server only) per message, and the wall time per message. No HTTP, Kafka
or other service in the way: the figures move with the statements the code
sends, so they compare two versions of the code better than the whole-platform
``cpu_per_message.py`` does on a busy box (run both versions alternately).

Each part runs in its own process (a second ``Database`` in one process would bind
every transaction to its tenant twice: see pytake_common.db).

Usage: python bench/hot_path.py [--n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import event, insert

import pytake_conversations
import pytake_whatsapp_gateway
from pytake_common.crypto import SecretBox
from pytake_common.db import Database
from pytake_common.event_types import WHATSAPP_MESSAGE_RECEIVED_V1
from pytake_common.events import CloudEvent
from pytake_common.ids import contact_id_for, message_id_for_wamid
from pytake_common.migrations import upgrade
from pytake_common.pgtenant import to_asyncpg_url
from pytake_conversations.handlers import HANDLERS
from pytake_whatsapp_gateway.tables import numbers
from pytake_whatsapp_gateway.webhooks.intake import WebhookIntake

sys.path.insert(0, str(Path(__file__).parent))
from _measure import cpu, infrastructure, postgres_cpu

PHONE_NUMBER_ID = "100200300"
APP_SECRET = "bench-app-secret"
CUSTOMERS = 50


async def measure(
    name: str,
    db: Database,
    postmaster: psutil.Process,
    ops: list[Callable[[], Awaitable[Any]]],
) -> None:
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    me = psutil.Process()
    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    start, pg_start, wall_start = cpu(me), postgres_cpu(postmaster), time.monotonic()
    for op in ops:
        await op()
    wall = time.monotonic() - wall_start
    used, pg_used = cpu(me) - start, postgres_cpu(postmaster) - pg_start
    event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    n = len(ops)
    print(
        f"  {name:28} {statements / n:5.2f} statements (+ BEGIN, COMMIT)  "
        f"client {used / n * 1000:5.2f} ms  postgres {pg_used / n * 1000:5.2f} ms  "
        f"sum {(used + pg_used) / n * 1000:5.2f} ms  wall {wall / n * 1000:5.2f} ms"
    )


def webhook(wa_id: str, i: int) -> tuple[bytes, str]:
    wamid = f"wamid.HOT{uuid.uuid4().hex}"
    body = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "WABA1",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550100",
                                    "phone_number_id": PHONE_NUMBER_ID,
                                },
                                "contacts": [{"profile": {"name": "Bench"}, "wa_id": wa_id}],
                                "messages": [
                                    {
                                        "from": wa_id,
                                        "id": wamid,
                                        "timestamp": str(int(time.time())),
                                        "type": "text",
                                        "text": {"body": f"message {i}"},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()
    digest = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, f"sha256={digest}"


async def intake(pg_url: str, postmaster: psutil.Process, n: int) -> None:
    url = to_asyncpg_url(pg_url, database=f"bench_gateway_{uuid.uuid4().hex[:8]}")
    migrations = Path(pytake_whatsapp_gateway.__file__).parent / "migrations"
    await asyncio.to_thread(upgrade, migrations, url, "pytake_app")
    db = Database(url, app_role="pytake_app")
    box = SecretBox("bench-secret-key-" + "x" * 32)
    async with db.transaction(bypass_rls=True) as s:
        await s.execute(
            insert(numbers).values(
                id=uuid.uuid4(),
                organization_id=uuid.uuid4(),
                phone_number_id=PHONE_NUMBER_ID,
                waba_id="WABA1",
                display_phone_number="15550100",
                access_token_enc=box.encrypt("token"),
                app_secret_enc=box.encrypt(APP_SECRET),
                verify_token_hash=hashlib.sha256(b"verify").hexdigest(),
            )
        )
    receiver = WebhookIntake(db, box, None)

    def op(i: int) -> Callable[[], Awaitable[Any]]:
        body, signature = webhook(f"5511{i % CUSTOMERS:09d}", i)

        async def run() -> None:
            outcome = await receiver.receive(body, signature)
            assert outcome == "accepted", outcome

        return run

    for i in range(100):  # warm-up: statement caches, first conversations
        await op(i)()
    await measure("webhook intake", db, postmaster, [op(i) for i in range(n)])
    await db.dispose()


def received(org: uuid.UUID, number_id: uuid.UUID, wa_id: str, i: int) -> CloudEvent:
    wamid = f"wamid.HOT{uuid.uuid4().hex}"
    contact_id = contact_id_for(org, wa_id)
    return CloudEvent(
        source="pytake/whatsapp-gateway",
        type=WHATSAPP_MESSAGE_RECEIVED_V1,
        subject=str(contact_id),
        tenantid=str(org),
        data={
            "message_id": str(message_id_for_wamid(PHONE_NUMBER_ID, wamid)),
            "wamid": wamid,
            "organization_id": str(org),
            "number_id": str(number_id),
            "phone_number_id": PHONE_NUMBER_ID,
            "display_phone_number": "15550100",
            "contact_id": str(contact_id),
            "wa_id": wa_id,
            "profile_name": "Bench",
            "type": "text",
            "text": f"message {i}",
            "content": {"from": wa_id, "id": wamid, "type": "text", "text": {"body": "hi"}},
            "timestamp": datetime.now(UTC).isoformat(),
        },
    )


async def handler(pg_url: str, postmaster: psutil.Process, n: int) -> None:
    url = to_asyncpg_url(pg_url, database=f"bench_conversations_{uuid.uuid4().hex[:8]}")
    migrations = Path(pytake_conversations.__file__).parent / "migrations"
    await asyncio.to_thread(upgrade, migrations, url, "pytake_app")
    db = Database(url, app_role="pytake_app")
    org, number_id = uuid.uuid4(), uuid.uuid4()
    handle = HANDLERS[WHATSAPP_MESSAGE_RECEIVED_V1]

    def op(i: int) -> Callable[[], Awaitable[Any]]:
        e = received(org, number_id, f"5511{i % CUSTOMERS:09d}", i)

        async def run() -> None:
            async with db.transaction(organization_id=org) as session:
                await handle(session, e)

        return run

    for i in range(100):  # warm-up: opens the customers' conversations
        await op(i)()
    await measure("message.received handler", db, postmaster, [op(i) for i in range(n)])
    await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--part", choices=("intake", "handler"), help=argparse.SUPPRESS)
    parser.add_argument("--pg-url", help=argparse.SUPPRESS)
    parser.add_argument("--postmaster", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:  # one part per process: each Database() adds its tenant-binding listener
        # to SQLAlchemy's global Session class, so a second one would bind twice
        postmaster = psutil.Process(args.postmaster)
        part = intake if args.part == "intake" else handler
        asyncio.run(part(args.pg_url, postmaster, args.n))
        return
    with infrastructure("hot-path", broker=False) as infra:
        if infra.postmaster is None:
            sys.exit("hot_path measures the embedded PostgreSQL: unset PYTAKE_DATABASE_URL")
        print(
            f"Per inbound message, {args.n} messages one at a time (client: the driving process):"
        )
        for part in ("intake", "handler"):
            argv = [sys.executable, __file__, "--part", part, "--n", str(args.n)]
            argv += ["--pg-url", infra.pg_url, "--postmaster", str(infra.postmaster.pid)]
            subprocess.run(argv, check=True)


if __name__ == "__main__":
    main()
