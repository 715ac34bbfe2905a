"""Benchmark: contact search and filtered lists at 200,000 contacts, and a 100,000-row import.

Starts an embedded PostgreSQL (unless PYTAKE_DATABASE_URL is set), migrates a fresh
contacts database, seeds with COPY 200,000 contacts in one organization plus
``--others`` organizations of 2,000 each (tags on 10% of the big one), then runs the
contacts service under uvicorn (a subprocess, loopback, workers off: no broker needed)
and measures over real HTTP:

1. ``--c`` concurrent clients issuing ``--n`` requests: ``q=`` searches (names with
   typos, accent-free spellings, phone fragments typed in different formats, e-mails)
   and filtered lists (tag, blocked, opted-in, last-interaction range) — p50/p95/p99,
   once straight at the service, then through the real api-gateway (its own process,
   ``python -m pytake_api_gateway serve``, verifying the same real RS256 JWT); each
   after a unmeasured concurrent warm-up of ``--n``/4 requests, from a lean load
   generator (the gateway's keep-alive pool on uvloop) that shares the cores;
2. ``POST /v1/contacts/import`` of ``--rows`` CSV rows (new phones), timed end to end;
3. EXPLAIN (ANALYZE, BUFFERS) of the main queries, as the service's role under RLS,
   and of the page query ``pytake_contact_page`` runs inside for some searches.

Usage: python bench/contacts_search.py [--n 10000] [--c 16] [--rows 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import asyncpg
import psutil
import uvloop
from _measure import LeanClient, cpu, pct, postgres_cpu, postmaster, stop

import pytake_contacts
from pytake_common.ids import contact_id_for
from pytake_common.migrations import upgrade
from pytake_common.pgtenant import asyncpg_dsn, to_asyncpg_url
from pytake_contacts.search import LIST_SELECT, ContactFilter, page_sql
from pytake_devstack.infra import EmbeddedPostgres, free_port, wait_for_port
from pytake_devstack.tokens import TokenFactory

FIRST = [
    "Maria", "José", "João", "Ana", "Antônio", "Francisco", "Carlos", "Paulo", "Pedro", "Lucas",
    "Luíza", "Mariana", "Gabriel", "Rafael", "Fernanda", "Juliana", "Márcio", "Letícia", "André",
    "Patrícia", "Sebastián", "Zoë", "Chloé", "François", "Björn", "Jürgen", "Søren", "Agnès",
    "John", "Michael", "Sarah", "Emily", "David", "Jennifer", "Robert", "Linda", "William",
    "Elizabeth", "James", "Susan", "Thomas", "Jessica", "Daniel", "Karen", "Matthew", "Nancy",
]  # fmt: skip
LAST = [
    "Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira", "Lima",
    "Gomes", "Conceição", "Ribeiro", "Araújo", "Gonçalves", "Müller", "García", "Martínez",
    "López", "Hernández", "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis",
    "Wilson", "Anderson", "Taylor", "Thomas", "Moore", "Jackson", "Martin", "Lee", "Thompson",
    "White", "Harris", "Clark", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
]  # fmt: skip
COMPANIES = [
    "Padaria Ávila", "Acme Ltd", "Globex", "Initech", "Umbrella", "Soylent", "Hooli", "Stark",
    "Wayne Enterprises", "Wonka", "Cyberdyne", "Tyrell", "Vandelay", "Pied Piper", "Aperture",
]  # fmt: skip
TYPO_QUERIES = [
    "maria silvaa", "jose conceicao", "joao", "antonio sousa", "luiza", "leticia", "sebastian",
    "francois", "jurgen muller", "soren", "jon smith", "micheal", "jenifer", "elizabet",
    "rodriges", "goncalves", "araujo", "hernandes", "thomson", "padaria avila", "wayne",
]  # fmt: skip


AREA_CODES = (11, 21, 31, 41, 51, 61, 71, 81, 85, 91, 12, 13, 14, 15, 16, 17, 18, 19, 22, 24)


def phone_for(org_index: int, i: int) -> str:
    """A valid Brazilian mobile number, distinct per (organization, i)."""
    return f"+55{AREA_CODES[org_index % len(AREA_CODES)]}9{i:08d}"


def person(rng: random.Random, org_index: int, i: int) -> tuple[str, str, str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    email = f"{first}.{last}{i}@example.com".lower()
    return f"{first} {last}", phone_for(org_index, i), email, rng.choice(COMPANIES)


async def seed(dsn: str, big: uuid.UUID, others: list[uuid.UUID], n_big: int) -> list[uuid.UUID]:
    rng = random.Random(7)
    conn = await asyncpg.connect(dsn)
    now = datetime.now(UTC)
    tag_ids = [uuid.uuid4() for _ in range(5)]
    try:
        await conn.copy_records_to_table(
            "tags",
            records=[(t, big, f"tag {i}", "#336699") for i, t in enumerate(tag_ids)],
            columns=["id", "organization_id", "name", "color"],
        )
        for index, (org, count) in enumerate([(big, n_big), *((o, 2000) for o in others)]):
            records, tagged = [], []
            for i in range(count):
                name, phone, email, company = person(rng, index, i)
                wa_id = phone[1:]
                cid = contact_id_for(org, wa_id)
                created = now - timedelta(days=730) + timedelta(seconds=i * 300)
                records.append(
                    (
                        cid,
                        org,
                        wa_id,
                        name,
                        "profile",
                        phone,
                        email,
                        company,
                        created,
                        created + timedelta(days=rng.randint(0, 700)),
                        rng.random() < 0.4,
                        created if rng.random() < 0.02 else None,
                    )
                )
                if org == big and rng.random() < 0.1:
                    tagged.append((big, cid, rng.choice(tag_ids)))
            await conn.copy_records_to_table(
                "contacts",
                records=records,
                columns=[
                    "id",
                    "organization_id",
                    "wa_id",
                    "name",
                    "name_source",
                    "phone",
                    "email",
                    "company",
                    "created_at",
                    "last_interaction_at",
                    "marketing_opt_in",
                    "blocked_at",
                ],
            )
            if tagged:
                await conn.copy_records_to_table(
                    "contact_tags",
                    records=tagged,
                    columns=["organization_id", "contact_id", "tag_id"],
                )
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")  # the load's WAL written out before measuring
    finally:
        await conn.close()
    return tag_ids


def serve_jwks(tokens: TokenFactory) -> tuple[ThreadingHTTPServer, str]:
    import json

    body = json.dumps(tokens.jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"


def requests_mix(rng: random.Random, tag_ids: list[uuid.UUID], n: int) -> list[dict[str, str]]:
    mix: list[dict[str, str]] = []
    for _ in range(n):
        roll = rng.random()
        i = rng.randrange(200_000)
        phone = phone_for(0, i)
        if roll < 0.35:
            params = {"q": rng.choice(TYPO_QUERIES)}
        elif roll < 0.5:
            digits = phone[3:]
            params = {
                "q": rng.choice(
                    [
                        f"({digits[:2]}) {digits[2:7]}-{digits[7:]}",
                        f"+55 {digits[:2]} {digits[2:7]}",
                        digits[-8:],
                        phone,
                    ]
                )
            }
        elif roll < 0.6:
            first, last = rng.choice(FIRST).lower(), rng.choice(LAST).lower()
            params = {"q": f"{first}.{last}{i}@exa"}
        elif roll < 0.7:
            params = {"tag_id": str(rng.choice(tag_ids))}
        elif roll < 0.8:
            params = {"blocked": "true"}
        elif roll < 0.9:
            since = datetime.now(UTC) - timedelta(days=rng.randint(1, 60))
            params = {"last_interaction_from": since.isoformat(), "opted_in": "true"}
        else:
            params = {"q": rng.choice(TYPO_QUERIES), "opted_in": "true"}
        mix.append(params)
    return mix


def kind(params: dict[str, str]) -> str:
    q = params.get("q")
    if q is None:
        return "filtered list"
    if "@" in q:
        return "q= e-mail"
    if any(ch.isdigit() for ch in q):
        return "q= phone"
    return "q= name (+filter)" if len(params) > 1 else "q= name"


async def load(
    label: str,
    base: str,
    headers: dict[str, str],
    mix: list[dict[str, str]],
    c: int,
    processes: dict[str, Callable[[], float]],
) -> None:
    errors = 0
    client = LeanClient(base, c)
    auth = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

    async def get(params: dict[str, str]) -> int:
        target = b"/v1/contacts?" + urlencode(params).encode()
        status, _ = await client.request("GET", target, auth)
        return status

    try:
        sequential: dict[str, list[float]] = {}
        for params in mix[:200]:  # warm-up, one at a time: latency without queueing
            t0 = time.perf_counter()
            errors += await get(params) != 200
            sequential.setdefault(kind(params), []).append(time.perf_counter() - t0)
        print(f"{label}: one request at a time (200 requests), median by kind:")
        for name, values in sorted(sequential.items()):
            print(f"  {name:<18} {pct(values, 50) * 1000:7.1f} ms  (n={len(values)})")

        async def run(requests: list[dict[str, str]]) -> tuple[dict[str, list[float]], float]:
            """Send ``requests`` from ``c`` closed-loop clients; latencies by kind."""
            nonlocal errors
            pending = list(reversed(requests))
            by_kind: dict[str, list[float]] = {}

            async def worker() -> None:
                nonlocal errors
                while pending:
                    params = pending.pop()
                    t0 = time.perf_counter()
                    errors += await get(params) != 200
                    by_kind.setdefault(kind(params), []).append(time.perf_counter() - t0)

            start = time.perf_counter()
            await asyncio.gather(*[worker() for _ in range(c)])
            return by_kind, time.perf_counter() - start

        # Concurrent warm-up, not measured: the service's pool grows to ``c`` connections
        # and each new PostgreSQL backend compiles the search function and fills its
        # catalog caches on its first requests (a pool in service is warm).
        warm_up = mix[: len(mix) // 4]
        _, warm_elapsed = await run(warm_up)
        print(
            f"{label}: warm-up, {len(warm_up)} requests, {c} concurrent clients: "
            f"{len(warm_up) / warm_elapsed:,.0f} req/s (not measured)"
        )
        cpu0 = {name: used() for name, used in processes.items()}
        by_kind, elapsed = await run(mix)
        cpu = {name: used() - cpu0[name] for name, used in processes.items()}
    finally:
        client.close()
    latencies = [t for values in by_kind.values() for t in values]
    per_request = "   ".join(
        f"{name} CPU {used / len(mix) * 1e6:,.0f} µs/request" for name, used in cpu.items()
    )
    print(f"{label}: {len(mix)} requests, {c} concurrent clients")
    print(
        f"  {len(mix) / elapsed:,.0f} req/s   p50 {pct(latencies, 50) * 1000:.1f} ms   "
        f"p95 {pct(latencies, 95) * 1000:.1f} ms   p99 {pct(latencies, 99) * 1000:.1f} ms   "
        f"non-200: {errors}   {per_request}"
    )
    for name, values in sorted(by_kind.items()):
        print(
            f"    {name:<18} p50 {pct(values, 50) * 1000:6.1f} ms   "
            f"p95 {pct(values, 95) * 1000:6.1f} ms   (n={len(values)})"
        )


async def import_rows(base: str, headers: dict[str, str], rows: int) -> None:
    lines = ["phone,name,email,company"]
    rng = random.Random(11)
    for i in range(rows):
        name, phone, email, company = person(rng, 19, i)
        lines.append(f"{phone},{name},{email},{company}")
    body = ("\n".join(lines) + "\n").encode()
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(base, headers=headers, timeout=timeout) as http:
        t0 = time.perf_counter()
        async with http.post(
            "/v1/contacts/import", data=body, headers={"Content-Type": "text/csv"}
        ) as r:
            result = await r.json()
        elapsed = time.perf_counter() - t0
    failed = result.get("failed", [])
    print(f"CSV import of {rows:,} rows ({len(body) / 1e6:.1f} MB) through the API:")
    print(
        f"  {elapsed:.1f} s ({rows / elapsed:,.0f} rows/s)   created {result.get('created')}   "
        f"updated {result.get('updated')}   failed {len(failed)}"
    )


#: searches whose inner query (built by pytake_contact_search_sql) is explained as the
#: owner, like the SECURITY DEFINER function runs it: (q, digits, opted_in)
INNER = {
    "a name with a typo ('jurgen muller')": ("jurgen muller", None, None),
    "a common word ('wayne')": ("wayne", None, None),
    "a name + opted in ('maria silvaa')": ("maria silvaa", None, True),
    "a type-ahead prefix ('fern')": ("fern", None, None),
    "an e-mail fragment ('maria.silva1234@exa')": ("maria.silva1234@exa", None, None),
    "phone digits ('11900012345')": (None, "11900012345", None),
    "phone type-ahead every phone shares ('+55 11 90')": (None, "551190", None),
    "a phone prefix 10,000 phones share, late in order ('+55 11 90001')": (
        None,
        "551190001",
        None,
    ),
}
INNER_SQL = (
    "SELECT pytake_contact_search_sql($1, $2, NULL, NULL, NULL, NULL, $3, NULL, NULL, NULL,"
    " NULL, NULL, NULL, NULL, 51)"
)


async def explain(dsn: str, big: uuid.UUID, tag_ids: list[uuid.UUID]) -> None:
    since = datetime.now(UTC) - timedelta(days=30)
    cases = {
        "q= name with a typo ('jurgen muller')": ContactFilter(q="jurgen muller"),
        "q= a common word ('wayne')": ContactFilter(q="wayne"),
        "q= name + opted in ('maria silvaa')": ContactFilter(q="maria silvaa", opted_in=True),
        "q= phone fragment ('(11) 90001-2345')": ContactFilter(q="(11) 90001-2345"),
        "q= e-mail fragment": ContactFilter(q="maria.silva1234@exa"),
        "tag filter": ContactFilter(tag_id=tag_ids[0]),
        "last interaction >= 30 days ago + opted in": ContactFilter(
            interacted_from=since, opted_in=True
        ),
    }
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"SET pytake.organization_id = '{big}'")
        await conn.execute("SET max_parallel_workers_per_gather = 0")
        await conn.execute("SET pg_trgm.word_similarity_threshold = 0.5")
        for title, (q, digits, opted_in) in INNER.items():  # as the definer function runs it
            t0 = time.perf_counter()
            sql = await conn.fetchval(INNER_SQL, q, digits, opted_in)
            built = (time.perf_counter() - t0) * 1000
            plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}")
            print(f"\nEXPLAIN inside pytake_contact_page, {title} (SQL built in {built:.1f} ms):")
            print("   ", sql if len(sql) < 600 else sql[:600] + " ...")
            for row in plan:
                print("   ", row[0])
        await conn.execute("SET ROLE pytake_app")
        await conn.execute(f"SET pytake.organization_id = '{big}'")
        for title, f in cases.items():  # the query GET /v1/contacts runs
            sql, args = page_sql(big, f, 51, None, LIST_SELECT)
            plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", *args)
            print(f"\nEXPLAIN {title}:")
            for row in plan:
                print("   ", row[0])
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--c", type=int, default=16)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--big", type=int, default=200_000)
    parser.add_argument("--others", type=int, default=50)
    parser.add_argument("--no-explain", action="store_true")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="pytake-bench-contacts-"))
    pg = None
    server_url = os.environ.get("PYTAKE_DATABASE_URL")
    if not server_url:
        pg = EmbeddedPostgres(state / "pg")
        server_url = pg.start()
    db_name = f"bench_contacts_{uuid.uuid4().hex[:8]}"
    url = to_asyncpg_url(server_url, database=db_name)
    dsn = asyncpg_dsn(url)
    service: subprocess.Popen[bytes] | None = None
    gateway: subprocess.Popen[bytes] | None = None
    jwks_server = None
    try:
        migrations = Path(pytake_contacts.__file__).parent / "migrations"
        upgrade(migrations, url, "pytake_app")
        big, others = uuid.uuid4(), [uuid.uuid4() for _ in range(args.others)]
        t0 = time.perf_counter()
        tag_ids = asyncio.run(seed(dsn, big, others, args.big))
        total = args.big + 2000 * args.others
        print(f"seeded {total:,} contacts with COPY in {time.perf_counter() - t0:.1f} s")

        tokens = TokenFactory()
        jwks_server, jwks_url = serve_jwks(tokens)
        port = free_port()
        env = os.environ | {
            "PYTAKE_OWN_DATABASE_URL": url,
            "PYTAKE_PORT": str(port),
            "PYTAKE_RUN_WORKERS": "false",
            "PYTAKE_AUTH_JWKS_URL": jwks_url,
            "PYTAKE_LOG_LEVEL": "WARNING",
            "PYTAKE_STATE_DIR": str(state / "state"),
        }
        service = subprocess.Popen(
            [sys.executable, "-m", "pytake_contacts", "serve"], env=env, cwd=state
        )
        wait_for_port("127.0.0.1", port, timeout=60)
        base = f"http://127.0.0.1:{port}"
        headers = {
            "Authorization": "Bearer " + tokens.mint(organization_id=big, role="agent", ttl=3600)
        }
        gateway_port = free_port()
        gateway = subprocess.Popen(
            [sys.executable, "-m", "pytake_api_gateway", "serve"],
            env=os.environ
            | {
                "PYTAKE_ENV": "test",
                "PYTAKE_SECRET_KEY": secrets.token_urlsafe(32),
                "PYTAKE_GATEWAY_PORT": str(gateway_port),
                "PYTAKE_AUTH_URL": jwks_url.removesuffix("/.well-known/jwks.json"),
                "PYTAKE_CONTACTS_URL": base,
                "PYTAKE_LOG_LEVEL": "WARNING",
                # No broker: the revocation and organization replicas stay empty but are
                # still consulted on every request.
                "PYTAKE_RUN_WORKERS": "false",
                # Spend from the organization's bucket on every request, never refuse.
                "PYTAKE_RATELIMIT_ORGANIZATION_PER_MINUTE": str(10**9),
            },
            cwd=state,
        )
        wait_for_port("127.0.0.1", gateway_port, timeout=60)
        mix = requests_mix(random.Random(3), tag_ids, args.n)
        measured = {
            "service": partial(cpu, psutil.Process(service.pid)),
            "load generator": partial(cpu, psutil.Process()),
        }
        if pg is not None:  # the embedded server: its CPU per request too
            measured["postgres"] = partial(postgres_cpu, postmaster(pg))
        print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout}")
        uvloop.run(load("service direct", base, headers, mix, args.c, measured))
        uvloop.run(
            load(
                "through api-gateway",
                f"http://127.0.0.1:{gateway_port}",
                headers,
                mix,
                args.c,
                measured | {"gateway": partial(cpu, psutil.Process(gateway.pid))},
            )
        )
        if args.rows:
            asyncio.run(import_rows(base, headers, args.rows))
        if not args.no_explain:
            asyncio.run(explain(dsn, big, tag_ids))
    finally:
        for process in (gateway, service):
            stop(process)
        if jwks_server is not None:
            jwks_server.shutdown()
        if pg:
            pg.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
