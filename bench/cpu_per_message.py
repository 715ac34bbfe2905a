"""Where an inbound message's CPU goes: per-process CPU time around N webhooks.

Starts the whole platform on loopback (embedded PostgreSQL and Tansu), posts N
signed single-message webhooks straight to whatsapp-gateway (8 at a time),
waits for the consumers to drain, and prints each process's CPU time divided by
N (idle overhead of the wait included, so small figures are mostly idle).
Then times one ``Database.transaction()`` with one statement against a raw
asyncpg query. Usage: python bench/cpu_per_message.py [--n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import psutil
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))

from webhook_intake import payload

from pytake_common.db import Database
from pytake_common.outbox import plain_dsn
from pytake_common.settings import to_asyncpg_url
from pytake_devstack.infra import EmbeddedPostgres, TansuBroker
from pytake_devstack.mainloop import MainLoop
from pytake_devstack.stack import LocalStack


def cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def postgres_cpu() -> float:
    return sum(cpu(p) for p in psutil.process_iter() if p.name() == "postgres")


async def per_message(stack: LocalStack, procs: dict[str, psutil.Process], n: int) -> None:
    loop = MainLoop(stack.url("api-gateway"), stack.url("meta-simulator"))
    tenant = await loop.register("CPU Org")
    number = await loop.connect_number(tenant)
    await asyncio.sleep(3)
    before = {k: cpu(p) for k, p in procs.items()}
    pg_before = postgres_cpu()
    sem = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=stack.url("whatsapp-gateway")) as client:

        async def one(i: int) -> None:
            raw, _ = payload(number.phone_number_id, f"1555{i % 50:07d}", "x")
            sig = "sha256=" + hmac.new(number.app_secret.encode(), raw, hashlib.sha256).hexdigest()
            async with sem:
                await client.post(
                    "/webhooks/whatsapp",
                    content=raw,
                    headers={"X-Hub-Signature-256": sig, "Content-Type": "application/json"},
                )

        await asyncio.gather(*[one(i) for i in range(n)])
    await asyncio.sleep(25)  # let every consumer drain
    print(f"CPU per inbound message over {n} webhooks (idle overhead of the 25 s drain included):")
    for name, p in procs.items():
        print(f"  {name:18} {(cpu(p) - before[name]) / n * 1000:6.2f} ms")
    print(f"  {'postgres':18} {(postgres_cpu() - pg_before) / n * 1000:6.2f} ms")
    await loop.aclose()


async def per_statement(server_url: str) -> None:
    url = to_asyncpg_url(server_url, database="postgres")
    db = Database(url, pool_size=2)
    org = uuid.uuid4()
    for _ in range(50):
        async with db.transaction(organization_id=org) as s:
            await s.execute(text("SELECT 1"))
    start, n = time.perf_counter(), 500
    for _ in range(n):
        async with db.transaction(organization_id=org) as s:
            await s.execute(text("SELECT 1"))
    tx = (time.perf_counter() - start) / n * 1000
    await db.dispose()
    conn = await asyncpg.connect(plain_dsn(url))
    start = time.perf_counter()
    for _ in range(n):
        await conn.fetchval("SELECT 1")
    raw = (time.perf_counter() - start) / n * 1000
    await conn.close()
    print(
        f"Database.transaction() with one statement: {tx:.2f} ms; raw asyncpg query: {raw:.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="pytake-cpu-"))
    pg = EmbeddedPostgres(state / "pg")
    url = pg.start()
    broker = TansuBroker()
    bootstrap = broker.start()
    stack = LocalStack(
        url,
        bootstrap,
        state,
        extra_env={"PYTAKE_LOG_LEVEL": "WARNING", "PYTAKE_RATELIMIT_ENABLED": "false"},
    )
    try:
        stack.start()
        procs = {k: psutil.Process(p.pid) for k, p in stack.procs.items()}
        assert broker.proc is not None
        procs["tansu"] = psutil.Process(broker.proc.pid)
        asyncio.run(per_message(stack, procs, args.n))
        asyncio.run(per_statement(url))
    finally:
        stack.stop()
        broker.stop()
        pg.stop()


if __name__ == "__main__":
    main()
