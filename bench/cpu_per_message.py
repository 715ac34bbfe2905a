"""Where an inbound message's CPU goes: per-process CPU time around N webhooks.

Starts the whole platform on loopback (embedded PostgreSQL and Tansu), measures
each process's idle CPU rate for ``--idle`` seconds, posts N signed
single-message webhooks straight to whatsapp-gateway (8 at a time), waits for
the consumers to drain, and prints each process's CPU time divided by N: all of
it (idle overhead of the wait included, so small figures are mostly idle), and
net of the idle rate over the same wall time. PostgreSQL is this run's server
only (postmaster, its live backends and the reaped ones), not every process
named postgres on the machine. Then times one ``Database.transaction()`` with
one statement against a raw asyncpg query (wall and client CPU).
Usage: python bench/cpu_per_message.py [--n 300] [--idle 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


def postgres_cpu(postmaster: psutil.Process) -> float:
    """This server's CPU: the postmaster, the backends it reaped, and the live ones."""
    t = postmaster.cpu_times()
    total = float(t.user + t.system + t.children_user + t.children_system)
    for child in postmaster.children():
        with contextlib.suppress(psutil.NoSuchProcess):
            total += cpu(child)
    return total


def cpu_all(procs: dict[str, psutil.Process], postmaster: psutil.Process) -> dict[str, float]:
    return {**{k: cpu(p) for k, p in procs.items()}, "postgres": postgres_cpu(postmaster)}


async def per_message(
    stack: LocalStack,
    procs: dict[str, psutil.Process],
    postmaster: psutil.Process,
    n: int,
    idle_s: float,
) -> None:
    loop = MainLoop(stack.url("api-gateway"), stack.url("meta-simulator"))
    tenant = await loop.register("CPU Org")
    number = await loop.connect_number(tenant)
    await asyncio.sleep(3)
    idle_start, t0 = cpu_all(procs, postmaster), time.monotonic()
    await asyncio.sleep(idle_s)
    idle_end, t1 = cpu_all(procs, postmaster), time.monotonic()
    idle_rate = {k: (idle_end[k] - idle_start[k]) / (t1 - t0) for k in idle_end}
    before, started = cpu_all(procs, postmaster), time.monotonic()
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
    after, wall = cpu_all(procs, postmaster), time.monotonic() - started
    print(
        f"CPU per inbound message over {n} webhooks, {wall:.1f} s with the 25 s drain "
        f"(net: minus each process's idle rate measured over {idle_s:.0f} s before):"
    )
    print(f"  {'process':18} {'all':>9} {'net':>9}   idle")
    totals = [0.0, 0.0]
    for name in after:
        used = after[name] - before[name]
        net = used - idle_rate[name] * wall
        totals[0] += used
        totals[1] += net
        print(
            f"  {name:18} {used / n * 1000:6.2f} ms {net / n * 1000:6.2f} ms"
            f"   {idle_rate[name] * 100:4.1f}% of a core"
        )
    print(f"  {'sum':18} {totals[0] / n * 1000:6.2f} ms {totals[1] / n * 1000:6.2f} ms")
    await loop.aclose()


async def per_statement(server_url: str) -> None:
    url = to_asyncpg_url(server_url, database="postgres")
    db = Database(url, pool_size=2)
    org = uuid.uuid4()
    for _ in range(50):
        async with db.transaction(organization_id=org) as s:
            await s.execute(text("SELECT 1"))
    n = 2000
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(n):
        async with db.transaction(organization_id=org) as s:
            await s.execute(text("SELECT 1"))
    tx = (time.perf_counter() - start) / n * 1000
    tx_cpu = (time.process_time() - cpu_start) / n * 1000
    await db.dispose()
    conn = await asyncpg.connect(plain_dsn(url))
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(n):
        await conn.fetchval("SELECT 1")
    raw = (time.perf_counter() - start) / n * 1000
    raw_cpu = (time.process_time() - cpu_start) / n * 1000
    await conn.close()
    print(
        f"Database.transaction() with one statement: {tx:.2f} ms ({tx_cpu:.3f} ms client CPU); "
        f"raw asyncpg query: {raw:.3f} ms ({raw_cpu:.3f} ms client CPU)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measurement")
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
        postmaster = psutil.Process(int((pg.pgdata / "postmaster.pid").read_text().split()[0]))
        asyncio.run(per_message(stack, procs, postmaster, args.n, args.idle))
        asyncio.run(per_statement(url))
    finally:
        stack.stop()
        broker.stop()
        pg.stop()


if __name__ == "__main__":
    main()
