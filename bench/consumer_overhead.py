"""The event consumer's own cost per record: its transaction, inbox mark and bookkeeping.

Starts an embedded PostgreSQL (unless ``PYTAKE_DATABASE_URL`` names one), creates the
mechanics tables, and hands N ``--n`` records to a real :class:`EventConsumer`
(``process_batch`` with ``--batch`` records at a time, as its ``run`` loop does), of one
organization, with three handlers: one that does nothing (the kit's overhead alone), one
running ``SELECT 1`` on the raw asyncpg connection (``rawpg.driver``: what hot handlers
do), and one running it through the SQLAlchemy session. Prints this process's CPU and the
wall time per record (wall time is only meaningful on a quiet box), after a warm-up.

Run it on another checkout's kit (the figure before a change) with that checkout's
``libs/common/src`` first on ``PYTHONPATH``.

Usage: python bench/consumer_overhead.py [--n 2000] [--batch 1,20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _measure import box, infrastructure
from aiokafka.structs import ConsumerRecord
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

import pytake_common
from pytake_common import rawpg
from pytake_common.consumer import EventConsumer, Handler
from pytake_common.db import Database
from pytake_common.events import CloudEvent
from pytake_common.mechanics import mechanics_metadata
from pytake_common.settings import ServiceSettings, to_asyncpg_url

ETYPE = "pytake.bench.thing.happened.v1"
SELECT_1 = text("SELECT 1")


async def nothing(session: AsyncSession, event: CloudEvent) -> None:
    return None


async def raw_statement(session: AsyncSession, event: CloudEvent) -> None:
    conn = await rawpg.driver(session)
    await conn.fetchval("SELECT 1")


async def session_statement(session: AsyncSession, event: CloudEvent) -> None:
    await session.execute(SELECT_1)


HANDLERS: dict[str, Handler] = {
    "no statement": nothing,
    "raw asyncpg statement": raw_statement,
    "SQLAlchemy session statement": session_statement,
}


def records(n: int, org: uuid.UUID, start: int) -> list[ConsumerRecord[Any, Any]]:
    out: list[ConsumerRecord[Any, Any]] = []
    for i in range(n):
        event = CloudEvent(
            source="pytake/bench", type=ETYPE, subject=str(i), tenantid=str(org), data={"i": i}
        )
        value = event.to_bytes()
        out.append(
            ConsumerRecord(
                "pytake.bench.thing", 0, start + i, 0, 0, b"k", value, None, 0, len(value), []
            )
        )
    return out


async def feed(consumer: EventConsumer, batch: list[ConsumerRecord[Any, Any]], size: int) -> None:
    """``batch`` handed to ``consumer`` ``size`` at a time, as its ``run`` loop does (inside
    ``holding()`` when the kit has it: its pool connection kept between transactions)."""
    holding = getattr(consumer, "holding", None)
    async with holding() if holding is not None else contextlib.nullcontext():
        for start in range(0, len(batch), size):
            await consumer.process_batch(batch[start : start + size])


async def transactions(db: Database, org: uuid.UUID, n: int) -> None:
    """``Database.transaction()`` with one statement, what services' API requests and
    workers use (no consumer)."""

    async def one() -> None:
        async with db.transaction(organization_id=org) as session:
            await session.execute(SELECT_1)

    for _ in range(200):
        await one()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        await one()
    cpu = (time.process_time() - cpu0) / n * 1000
    wall = (time.perf_counter() - wall0) / n * 1000
    print(f"Database.transaction() with one statement: {cpu:.3f} ms CPU, {wall:.3f} ms wall")


async def main(url: str, n: int, sizes: list[int]) -> None:
    db_url = to_asyncpg_url(url, database="postgres")
    settings = ServiceSettings(
        service_name="bench", database_url=db_url, kafka_bootstrap="127.0.0.1:1"
    )
    db = Database(db_url, pool_size=2)
    async with db.engine.begin() as conn:
        await conn.run_sync(mechanics_metadata.create_all)
    org = uuid.uuid4()
    offset = 0
    print(box())
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"kit: {Path(pytake_common.__file__).parent}")
    print(f"{'handler':30} {'batch':>5} {'CPU/record':>12} {'wall/record':>12}")
    try:
        for name, handler in HANDLERS.items():
            consumer = EventConsumer(settings, db, "bench", {ETYPE: handler})
            for size in sizes:
                warm = records(200, org, offset)
                offset += 200
                await feed(consumer, warm, size)
                batch = records(n, org, offset)
                offset += n
                cpu0, wall0 = time.process_time(), time.perf_counter()
                await feed(consumer, batch, size)
                cpu = (time.process_time() - cpu0) / n * 1000
                wall = (time.perf_counter() - wall0) / n * 1000
                print(f"{name:30} {size:5} {cpu:9.3f} ms {wall:9.3f} ms")
        await transactions(db, org, n)
    finally:
        await db.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch", default="1,20", help="batch sizes, comma-separated")
    args = parser.parse_args()
    with infrastructure("overhead", broker=False) as infra:
        asyncio.run(main(infra.pg_url, args.n, [int(b) for b in args.batch.split(",")]))
