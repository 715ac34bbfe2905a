"""Benchmark: the conversations service's inbox reads on a large organization.

Starts an embedded PostgreSQL (unless PYTAKE_DATABASE_URL is set), migrates a fresh
conversations database, seeds ONE organization with --conversations conversations and
--per-conversation messages each (generate_series in SQL, default 100,000 and 20 =
2,000,000 messages), starts the service as a uvicorn subprocess on loopback (tokens
checked against a JWKS served by this script), then runs --c concurrent clients for
--seconds against the inbox list (with and without filters), the counts and message
history (newest page, and the page before a message), and prints p50/p95/p99 per kind
as measured by the client, twice: straight to the service, then through the real
api-gateway (``python -m pytake_api_gateway serve``, its own process, in front of the
service: the same EdDSA tokens verified by the gateway against the same JWKS, the
revocation check and the organization's rate limit, set never to refuse, on every
request). Targets (issue #7): p95 < 30 ms at the service, < 50 ms through the gateway.

``--replicas N`` runs N service processes on N ports and gives each client
connection one of them in turn, as a Kubernetes Service spreads connections over
pods (on this 2-core box, 2 replicas is one per core), with one gateway process in
front of each; CPU per request is summed over the processes of a kind and printed
per kind (service, gateway): on a box shared with other work it is the figure that
does not depend on the neighbours.

Usage: python bench/inbox.py [--conversations 100000] [--per-conversation 20] [--c 16]
                             [--replicas 1] [--seconds 20] [--no-gateway]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import psutil
from aiohttp import web

import pytake_conversations
from pytake_devstack.infra import EmbeddedPostgres, free_port
from pytake_devstack.pytest_plugin import migrated_database
from pytake_devstack.tokens import TokenFactory

MIGRATIONS = Path(pytake_conversations.__file__).parent / "migrations"
AGENTS = 20
NUMBERS = 4

SEED_CONVERSATIONS = """
INSERT INTO conversations (id, organization_id, contact_id, number_id, phone_number_id,
    wa_id, status, priority, assignee_id, unread_count, last_inbound_at, last_message_at,
    created_at, updated_at)
SELECT gen_random_uuid(), $1, gen_random_uuid(), ($2::uuid[])[1 + i % $4],
       '1065403522' || (i % $4), (5511900000000 + i)::text,
       -- closed conversations are not "active": uniqueness holds (one per contact anyway)
       (ARRAY['open','pending','resolved','closed'])[1 + (i * 7) % 4],
       (ARRAY['low','normal','normal','high','urgent'])[1 + i % 5],
       CASE WHEN i % 5 = 0 THEN NULL ELSE ($3::uuid[])[1 + i % $5] END,
       i % 3,
       now() - make_interval(secs => i * 13),
       now() - make_interval(secs => i * 13),
       now() - make_interval(secs => i * 13 + 86400),
       now() - make_interval(secs => i * 13)
FROM generate_series(1, $6) AS i
"""

SEED_MESSAGES = """
INSERT INTO messages (id, organization_id, conversation_id, direction, type, text, content,
    wamid, status, status_at, sent_by, created_at, read_at)
SELECT gen_random_uuid(), c.organization_id, c.id,
       CASE WHEN n % 2 = 1 THEN 'inbound' ELSE 'outbound' END, 'text',
       'message ' || n, '{}'::jsonb, NULL,
       CASE WHEN n % 2 = 1 THEN 'received' ELSE 'read' END, c.created_at,
       CASE WHEN n % 2 = 1 THEN NULL ELSE c.assignee_id END,
       c.created_at + make_interval(secs => n * 60),
       CASE WHEN n % 2 = 1 THEN c.created_at END
FROM conversations c CROSS JOIN generate_series(1, $1) AS n
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def seed(url: str, org: uuid.UUID, conversations: int, per: int) -> list[uuid.UUID]:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        numbers = [uuid.uuid4() for _ in range(NUMBERS)]
        agents = [uuid.uuid4() for _ in range(AGENTS)]
        t0 = time.perf_counter()
        await conn.execute(SEED_CONVERSATIONS, org, numbers, agents, NUMBERS, AGENTS, conversations)
        t1 = time.perf_counter()
        await conn.execute(SEED_MESSAGES, per)
        t2 = time.perf_counter()
        await conn.execute("ANALYZE conversations; ANALYZE messages")
        print(
            f"seeded {conversations:,} conversations in {t1 - t0:.1f} s and "
            f"{conversations * per:,} messages in {t2 - t1:.1f} s "
            f"(analyze {time.perf_counter() - t2:.1f} s)"
        )
        return agents
    finally:
        await conn.close()


async def serve_jwks(tokens: TokenFactory) -> tuple[web.AppRunner, str]:
    """The signing keys, as auth serves them: returns the runner and auth's base URL."""
    app = web.Application()
    jwks = tokens.jwks()

    async def handler(_: web.Request) -> web.Response:
        return web.json_response(jwks)

    app.router.add_get("/.well-known/jwks.json", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def wait_healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError("the service exited")
            try:
                async with s.get(base + "/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("service did not become healthy")


Samples = dict[str, list[float]]


def cpu_of(processes: list[psutil.Process]) -> float:
    return sum(sum(process.cpu_times()[:2]) for process in processes)


async def load(
    bases: list[str],
    headers: dict[str, str],
    conv_ids: list[str],
    agents: list[uuid.UUID],
    concurrency: int,
    seconds: float,
    processes: dict[str, list[psutil.Process]],
    label: str,
) -> Samples:
    """``concurrency`` closed-loop clients on ``bases`` for ``seconds``; prints the rate,
    the CPU per request of each kind of process and the latencies per kind of request."""
    kinds: Samples = {}
    errors = 0

    def request() -> tuple[str, str, dict[str, str]]:
        roll = random.random()
        if roll < 0.15:
            return "inbox (no filter)", "/v1/conversations", {"limit": "50"}
        if roll < 0.30:
            return "inbox status=open", "/v1/conversations", {"status": "open", "limit": "50"}
        if roll < 0.40:
            agent = str(random.choice(agents))
            return (
                "inbox assignee+status",
                "/v1/conversations",
                {"assignee_id": agent, "status": "open", "limit": "50"},
            )
        if roll < 0.50:
            return (
                "inbox unassigned+unread",
                "/v1/conversations",
                {"unassigned": "true", "has_unread": "true", "limit": "50"},
            )
        if roll < 0.55:
            return "inbox counts", "/v1/conversations/counts", {}
        conv = random.choice(conv_ids)
        return (
            "history latest",
            f"/v1/conversations/{conv}/messages",
            {"latest": "true", "limit": "50"},
        )

    deadline = time.perf_counter() + seconds
    async with contextlib.AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(
                aiohttp.ClientSession(
                    base, headers=headers, connector=aiohttp.TCPConnector(limit=concurrency)
                )
            )
            for base in bases
        ]

        async def worker(session: aiohttp.ClientSession) -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                kind, path, params = request()
                t0 = time.perf_counter()
                async with session.get(path, params=params) as r:
                    await r.read()
                    ok = r.status == 200
                kinds.setdefault(kind, []).append(time.perf_counter() - t0)
                errors += not ok

        cpu0 = {name: cpu_of(group) for name, group in processes.items()}
        start = time.perf_counter()
        await asyncio.gather(*[worker(sessions[i % len(sessions)]) for i in range(concurrency)])
        elapsed = time.perf_counter() - start
        cpu = {name: cpu_of(group) - cpu0[name] for name, group in processes.items()}
    total = sum(len(v) for v in kinds.values())
    per_request = ", ".join(
        f"{name} {used / max(total, 1) * 1e6:,.0f}" for name, used in cpu.items()
    )
    print(
        f"{label}: {concurrency} concurrent clients, {len(bases)} service process(es), "
        f"{elapsed:.0f} s: {total / elapsed:,.0f} req/s, non-200: {errors}; "
        f"CPU µs/request: {per_request}"
    )
    everything = [x for v in kinds.values() for x in v]
    for kind, values in [*sorted(kinds.items()), ("ALL", everything)]:
        print(
            f"  {kind:26s} n={len(values):6d}  p50 {pct(values, 50) * 1000:6.1f} ms  "
            f"p95 {pct(values, 95) * 1000:6.1f} ms  p99 {pct(values, 99) * 1000:6.1f} ms"
        )
    kinds["ALL"] = everything
    return kinds


def summary(direct: Samples, proxied: Samples | None, concurrency: int) -> None:
    print(
        f"p95 per kind at {concurrency} clients (targets: service < 30 ms, "
        "through the gateway < 50 ms):"
    )
    for kind in [*sorted(k for k in direct if k != "ALL"), "ALL"]:
        line = f"  {kind:26s} service {pct(direct[kind], 95) * 1000:6.1f} ms"
        if proxied is not None and proxied.get(kind):
            line += f"   through the gateway {pct(proxied[kind], 95) * 1000:6.1f} ms"
        print(line)


def spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def gateway_env(port: int, auth: str, conversations: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTAKE_ENV": "test",
        "PYTAKE_SECRET_KEY": secrets.token_urlsafe(32),
        "PYTAKE_GATEWAY_PORT": str(port),
        "PYTAKE_AUTH_URL": auth,  # the JWKS this script serves
        "PYTAKE_CONVERSATIONS_URL": conversations,
        "PYTAKE_LOG_LEVEL": "WARNING",
        # No broker: the revocation and organization replicas stay empty, but are
        # still consulted on every request.
        "PYTAKE_RUN_WORKERS": "false",
        # Spend from the organization's bucket on every request, never refuse.
        "PYTAKE_RATELIMIT_ORGANIZATION_PER_MINUTE": str(10**9),
    }


async def bench(args: argparse.Namespace, pg_url: str, state: Path) -> None:
    url = await migrated_database(pg_url, "conversations", MIGRATIONS)
    org = uuid.uuid4()
    agents = await seed(url, org, args.conversations, args.per_conversation)
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    conv_ids = [
        str(r[0])
        for r in await conn.fetch("SELECT id FROM conversations ORDER BY random() LIMIT 5000")
    ]
    await conn.close()
    tokens = TokenFactory()
    runner, auth = await serve_jwks(tokens)
    procs: list[subprocess.Popen[bytes]] = []
    gateway_procs: list[subprocess.Popen[bytes]] = []
    bases: list[str] = []
    gateways: list[str] = []
    try:
        for _ in range(args.replicas):
            port = free_port()
            env = {
                **os.environ,
                "PYTAKE_OWN_DATABASE_URL": url,
                "PYTAKE_PORT": str(port),
                "PYTAKE_AUTH_JWKS_URL": auth + "/.well-known/jwks.json",
                "PYTAKE_RUN_WORKERS": "false",
                "PYTAKE_LOG_LEVEL": "WARNING",
                "PYTAKE_STATE_DIR": str(state / f"service-{port}"),
                "PYTAKE_ENV": "test",
            }
            procs.append(spawn([sys.executable, "-m", "pytake_conversations", "serve"], env))
            bases.append(f"http://127.0.0.1:{port}")
            if args.gateway:
                gateway_port = free_port()
                gateway_procs.append(
                    spawn(
                        [sys.executable, "-m", "pytake_api_gateway", "serve"],
                        gateway_env(gateway_port, auth, bases[-1]),
                    )
                )
                gateways.append(f"http://127.0.0.1:{gateway_port}")
        for base, proc in zip(bases + gateways, procs + gateway_procs, strict=True):
            await wait_healthy(base, proc)
        headers = tokens.headers(organization_id=org, role="agent", ttl=3600)
        processes = {"service": [psutil.Process(proc.pid) for proc in procs]}
        warm = min(args.seconds / 4, 5)
        c = args.c
        await load(bases, headers, conv_ids, agents, c, warm, processes, "warm-up")
        direct = await load(
            bases, headers, conv_ids, agents, c, args.seconds, processes, "at the service"
        )
        proxied = None
        if gateways:
            processes["gateway"] = [psutil.Process(proc.pid) for proc in gateway_procs]
            await load(gateways, headers, conv_ids, agents, c, warm, processes, "warm-up")
            proxied = await load(
                gateways,
                headers,
                conv_ids,
                agents,
                c,
                args.seconds,
                processes,
                "through the gateway",
            )
        summary(direct, proxied, c)
    finally:
        for proc in gateway_procs + procs:
            proc.terminate()
        for proc in gateway_procs + procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--per-conversation", type=int, default=20)
    parser.add_argument("--c", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--replicas", type=int, default=1, help="service processes")
    parser.add_argument(
        "--no-gateway", dest="gateway", action="store_false", help="measure the service only"
    )
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="pytake-bench-inbox-"))
    pg = None
    pg_url = os.environ.get("PYTAKE_DATABASE_URL")
    if not pg_url:
        pg = EmbeddedPostgres(state / "pg")
        pg_url = pg.start()
    try:
        asyncio.run(bench(args, pg_url, state))
    finally:
        if pg:
            pg.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
