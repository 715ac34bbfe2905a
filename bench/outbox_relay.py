"""The outbox relay's CPU per event: claiming, publishing and deleting staged events.

Starts an embedded PostgreSQL and Tansu (unless ``PYTAKE_DATABASE_URL`` /
``PYTAKE_KAFKA_BOOTSTRAP`` name real ones), creates the mechanics tables, and runs a real
:class:`~pytake_common.outbox.OutboxRelay` in a process of its own
(``bench/_outbox_relay.py``, as a service runs it). For each ``--batch`` size it stages
that many events at a time in this process (``add_events``, committed: the NOTIFY wakes
the relay) and waits until they are gone from the outbox before staging the next ones,
``--n`` events in all. Prints the relay process's CPU per event, net of its idle rate
(measured over ``--idle`` seconds before: its fallback polls), and the wall time per
batch (only meaningful on a quiet box).

Run it on another checkout's kit (the figure before a change) with that checkout's
``libs/common/src`` first on ``PYTHONPATH`` (the relay's process inherits it).

Usage: python bench/outbox_relay.py [--n 1000] [--batch 1,20] [--idle 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))

from _measure import box, cpu, infrastructure, stop

import pytake_common
from pytake_common.db import Database
from pytake_common.events import CloudEvent
from pytake_common.mechanics import mechanics_metadata
from pytake_common.outbox import add_events
from pytake_common.settings import to_asyncpg_url


def event(org: uuid.UUID, i: int) -> CloudEvent:
    return CloudEvent(
        source="pytake/bench",
        type="pytake.bench.thing.happened.v1",
        subject=str(uuid.uuid4()),
        tenantid=str(org),
        data={"organization_id": str(org), "i": i, "text": "x" * 200},
    )


async def main(url: str, relay: psutil.Process, n: int, sizes: list[int], idle: float) -> None:
    db = Database(url, pool_size=2)
    org = uuid.uuid4()
    print(box())
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"kit: {Path(pytake_common.__file__).parent}")

    async def drain(events: list[CloudEvent]) -> None:
        async with db.transaction() as session:
            await add_events(session, events)
        async with db.engine.connect() as c:
            raw = (await c.get_raw_connection()).driver_connection
            while True:
                if not await raw.fetchval("SELECT count(*) FROM outbox"):
                    return
                await asyncio.sleep(0.001)

    try:
        await drain([event(org, 0) for _ in range(50)])  # warm: the relay's start, producer
        c0, t0 = cpu(relay), time.monotonic()
        await asyncio.sleep(idle)
        rate = (cpu(relay) - c0) / (time.monotonic() - t0)
        print(f"relay idle: {rate * 100:.2f}% of a core")
        for size in sizes:
            rounds = max(n // size, 1)
            c0, t0 = cpu(relay), time.monotonic()
            for r in range(rounds):
                await drain([event(org, r * size + i) for i in range(size)])
            wall = time.monotonic() - t0
            net = (cpu(relay) - c0 - rate * wall) / (rounds * size) * 1000
            print(
                f"batch {size:3}: relay {net:.3f} ms CPU/event net "
                f"({rounds} batches; {wall / rounds * 1000:.2f} ms wall a batch, staging included)"
            )
    finally:
        await db.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch", default="1,20", help="events per batch, comma-separated")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle measurement")
    args = parser.parse_args()
    with infrastructure("relay") as infra:
        url = to_asyncpg_url(infra.pg_url, database="postgres")

        async def create() -> None:
            db = Database(url)
            async with db.engine.begin() as conn:
                await conn.run_sync(mechanics_metadata.create_all)
            await db.dispose()

        asyncio.run(create())
        env = {**os.environ, "PYTAKE_OWN_DATABASE_URL": url}
        env["PYTAKE_KAFKA_BOOTSTRAP"] = infra.bootstrap
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / "_outbox_relay.py")], env=env
        )
        try:
            asyncio.run(
                main(
                    url,
                    psutil.Process(proc.pid),
                    args.n,
                    [int(b) for b in args.batch.split(",")],
                    args.idle,
                )
            )
        finally:
            stop(proc)
