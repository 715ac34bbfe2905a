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
``--statements N`` loads pg_stat_statements into the server (it costs PostgreSQL CPU:
not for the figures) and prints, per database, the statements and their execution time
per message, and the N statements of most execution time.
``--profile DIR`` also samples each service with py-spy (when it is on PATH) from the
first webhook to the end of the drain, one collapsed-stack file per service in DIR.
Usage: python bench/cpu_per_message.py [--n 300] [--idle 10] [--ready-timeout 60] [--profile DIR]
                                       [--statements N]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import psutil
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))

from _measure import box, cpu, platform, postgres_cpu
from webhook_intake import payload

from pytake_common.db import Database
from pytake_common.pgtenant import asyncpg_dsn, to_asyncpg_url
from pytake_devstack.mainloop import MainLoop
from pytake_devstack.stack import LocalStack


def cpu_all(procs: dict[str, psutil.Process], postmaster: psutil.Process) -> dict[str, float]:
    return {**{k: cpu(p) for k, p in procs.items()}, "postgres": postgres_cpu(postmaster)}


async def per_message(
    stack: LocalStack,
    procs: dict[str, psutil.Process],
    postmaster: psutil.Process,
    n: int,
    idle_s: float,
    profile: Path | None = None,
    statements: tuple[str, int] | None = None,
) -> None:
    loop = MainLoop(stack.url("api-gateway"), stack.url("meta-simulator"))
    tenant = await loop.register("CPU Org")
    number = await loop.connect_number(tenant)
    await asyncio.sleep(3)
    print(box())
    idle_start, t0 = cpu_all(procs, postmaster), time.monotonic()
    await asyncio.sleep(idle_s)
    idle_end, t1 = cpu_all(procs, postmaster), time.monotonic()
    idle_rate = {k: (idle_end[k] - idle_start[k]) / (t1 - t0) for k in idle_end}
    spies = start_profilers(procs, profile)
    if statements is not None:
        await reset_statements(statements[0])
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
    stop_profilers(spies)
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
    if statements is not None:
        await print_statements(statements[0], n, statements[1])
    await loop.aclose()


async def reset_statements(server_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(server_url, database="postgres"))
    try:
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


async def print_statements(
    server_url: str, n: int, top: int, unit: str = "message", per_database: bool = False
) -> None:
    """What pg_stat_statements counted since the reset, per ``unit`` (n of them): by
    database, and the ``top`` statements of most execution time (``per_database``: and
    each database's ``top`` of most calls)."""
    conn = await asyncpg.connect(asyncpg_dsn(server_url, database="postgres"))
    try:
        rows = await conn.fetch(
            "SELECT d.datname AS db, s.calls, s.total_exec_time AS ms, s.rows, s.query"
            " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
            " WHERE s.query NOT LIKE '%pg_stat_statements%'"
        )
    finally:
        await conn.close()
    by_db: dict[str, list[float]] = {}
    for r in rows:
        calls_ms = by_db.setdefault(r["db"], [0.0, 0.0])
        calls_ms[0] += r["calls"]
        calls_ms[1] += r["ms"]
    print(f"statements per {unit} (pg_stat_statements, execution time; {n} {unit}s):")
    for db, (calls, ms) in sorted(by_db.items(), key=lambda kv: -kv[1][1]):
        print(f"  {db:28} {calls / n:7.2f} statements {ms / n:7.3f} ms")
    print(f"the {top} statements of most execution time (per {unit}: calls, ms; rows a call):")
    _print_rows(sorted(rows, key=lambda r: -r["ms"])[:top], n)
    if per_database:
        for db in sorted(by_db):
            print(f"{db}: its {top} statements of most calls (per {unit}: calls, ms; rows a call):")
            _print_rows(
                sorted((r for r in rows if r["db"] == db), key=lambda r: -r["calls"])[:top], n
            )


def statements_option(parser: argparse.ArgumentParser, unit: str) -> None:
    """``--statements N``: see :func:`print_statements` (loading pg_stat_statements costs
    PostgreSQL CPU: not for the runs whose CPU is the figure)."""
    parser.add_argument(
        "--statements",
        type=int,
        default=0,
        metavar="N",
        help=f"load pg_stat_statements (costs PostgreSQL CPU: not for the CPU figures) and"
        f" print statements per {unit} by database, the N of most execution time and each"
        f" database's N of most calls",
    )


def _print_rows(rows: list[asyncpg.Record], n: int) -> None:
    for r in rows:
        query = " ".join(r["query"].split())[:110]
        rows_a_call = r["rows"] / r["calls"] if r["calls"] else 0
        print(
            f"  {r['db'][:22]:22} {r['calls'] / n:6.2f} {r['ms'] / n:6.3f} ms"
            f" {rows_a_call:6.1f}  {query}"
        )


def start_profilers(
    procs: dict[str, psutil.Process], out: Path | None
) -> list[subprocess.Popen[bytes]]:
    """py-spy sampling each Python service into ``out/<name>.txt`` (collapsed stacks)."""
    spy = shutil.which("py-spy")
    if out is None:
        return []
    if spy is None:
        print("--profile: py-spy is not on PATH; no profiles", file=sys.stderr)
        return []
    out.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                *(spy, "record", "--pid", str(p.pid), "--rate", "250", "--nonblocking"),
                *("--format", "raw", "--output", str(out / f"{name}.txt")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, p in procs.items()
        if name not in ("tansu", "meta-simulator")
    ]


def stop_profilers(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()


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
    conn = await asyncpg.connect(asyncpg_dsn(url))
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
    parser.add_argument(
        "--ready-timeout", type=float, default=60.0, help="seconds each process may take to start"
    )
    parser.add_argument(
        "--statements",
        type=int,
        default=0,
        metavar="N",
        help="load pg_stat_statements and print statements per message and the N costliest",
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="directory for py-spy profiles per service"
    )
    args = parser.parse_args()
    with platform(
        "cpu", ready_timeout=args.ready_timeout, statements=args.statements > 0
    ) as running:
        procs = running.processes()
        master = procs.pop("postgres", None)
        if master is None or "tansu" not in procs:
            sys.exit(
                "cpu_per_message measures the embedded PostgreSQL and Tansu: "
                "unset PYTAKE_DATABASE_URL and PYTAKE_KAFKA_BOOTSTRAP"
            )
        statements = (running.infra.pg_url, args.statements) if args.statements else None
        asyncio.run(
            per_message(running.stack, procs, master, args.n, args.idle, args.profile, statements)
        )
        asyncio.run(per_statement(running.infra.pg_url))


if __name__ == "__main__":
    main()
