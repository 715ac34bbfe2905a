"""Outgoing webhooks: the source's commit -> the receiver has the signed POST, and isolation.

Targets (#18): at 100 events/s to 5 endpoints on loopback, p95 from the source change's
commit to the receiver under 500 ms; a receiver that hangs delays no other endpoint's
deliveries by more than 1 s.

Starts an embedded PostgreSQL and Tansu; the integrations service as a process of its
own (``python -m pytake_integrations serve``: API, consumer, delivery worker, relay); a
*source* database with an outbox and a real :class:`~pytake_common.outbox.OutboxRelay`
for it in another process (``bench/_outbox_relay.py``: the source service's half of the
path); and, in this process, the load generator and loopback receivers (aiohttp servers).
Endpoints are created with the service's own ``endpoints.create`` in its database. Then,
open loop (event ``i`` is committed at ``start + i / rate`` whether or not earlier ones
arrived, each commit its own task):

1. prints the box's calibration figure (``_measure.calibrate``) and load average;
2. **baseline**: the same schedule POSTed straight from the generator to ``--endpoints``
   receivers (keep-alive aiohttp, no PyTake in between): what loopback, the receivers and
   this event loop cost on the box right now;
3. **steady**: ``--rate`` conversations' ``message.appended`` events per second for
   ``--seconds``, each committed to the source's outbox (the clock starts when the commit
   returns), relayed to Kafka, consumed, fanned out and delivered to ``--endpoints``
   endpoints subscribed to ``message.received``: p50/p95/p99/max of commit -> receiver,
   how much of it is commit -> queued (the relay's and consumer's half), and CPU per
   delivery of each process (integrations, the relay, PostgreSQL, Tansu, this one);
4. **hang**: the same again, one endpoint of the ``--endpoints`` replaced by a receiver
   that never answers (each attempt times out after ``--timeout`` s, then retries with
   backoff): the others' figures, and how much later their worst delivery came than in
   step 3 (target: under 1 s).

Everything shares the box's cores (the generator and receivers too). Exit status 1 when
a target is missed or a delivery is missing.

Usage: python bench/outgoing_webhooks.py [--rate 100] [--seconds 20] [--endpoints 5]
       [--conversations 50] [--timeout 10] [--skip-hang]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import aiohttp
import asyncpg
import psutil
from _measure import Infrastructure, box, cpu, infrastructure, pct, postgres_cpu, stop
from aiohttp import web

import pytake_integrations
from pytake_common import event_types
from pytake_common.crypto import SecretBox
from pytake_common.db import Database
from pytake_common.events import CloudEvent
from pytake_common.outbox import CHANNEL as OUTBOX_CHANNEL
from pytake_common.pgtenant import asyncpg_dsn
from pytake_devstack.infra import free_port
from pytake_devstack.pytest_plugin import migrated_database
from pytake_devstack.stack import wait_ready
from pytake_integrations import endpoints as endpoint_rules
from pytake_integrations.config import Settings
from pytake_integrations.endpoints import EndpointCreate, UrlPolicy

MIGRATIONS = Path(pytake_integrations.__file__).parent / "migrations"

#: The source service's commit: its outbox row and the relay's wake-up, as ``add_event``.
STAGE = """
WITH staged AS (
    INSERT INTO outbox (event_id, topic, key, event, headers)
    VALUES ($1, $2, $3, $4::jsonb, '{}'::jsonb)
)
SELECT pg_notify($5, '')
"""


class Receivers:
    """Loopback receivers; ``arrived[(receiver, message_id)]`` is when the POST came in."""

    def __init__(self) -> None:
        self.arrived: dict[tuple[int, str], float] = {}
        self.runners: list[web.AppRunner] = []

    async def start(self, *, hang: bool = False) -> str:
        index = len(self.runners)

        async def ok(request: web.Request) -> web.Response:
            body = json.loads(await request.read())
            self.arrived.setdefault((index, body["data"]["message_id"]), time.time())
            return web.Response(status=204)

        async def never(request: web.Request) -> web.Response:
            await asyncio.sleep(3600)
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", never if hang else ok)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


def appended(org: uuid.UUID, conversation: uuid.UUID) -> CloudEvent:
    message = uuid.uuid4()
    return CloudEvent(
        source="pytake/conversations",
        type=event_types.CONVERSATIONS_MESSAGE_APPENDED_V1,
        subject=str(message),
        tenantid=str(org),
        data={
            "organization_id": str(org),
            "message_id": str(message),
            "conversation_id": str(conversation),
            "contact_id": str(uuid.uuid4()),
            "direction": "inbound",
            "type": "text",
            "created_at": datetime.now(UTC).isoformat(),
            "text": "hello",
        },
    )


@dataclass
class Run:
    """One open-loop run: when each message was due, when its commit returned."""

    due: dict[str, float] = field(default_factory=dict)
    committed: dict[str, float] = field(default_factory=dict)


Send = Callable[[int, float, Run], Coroutine[Any, Any, None]]


async def open_loop(rate: float, seconds: float, send: Send) -> Run:
    """Call ``send(i, run)`` at ``start + i / rate`` (wall clock), each in its own task."""
    run = Run()
    total = int(rate * seconds)
    start = time.time() + 0.2
    tasks: list[asyncio.Task[None]] = []
    for i in range(total):
        delay = start + i / rate - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i, start + i / rate, run)))
    await asyncio.gather(*tasks)
    return run


async def wait_for(receivers: Receivers, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(receivers.arrived) < expected:  # noqa: ASYNC110
        await asyncio.sleep(0.1)


def figures(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"p50 {pct(values, 50):.0f} p95 {pct(values, 95):.0f} "
        f"p99 {pct(values, 99):.0f} max {max(values):.0f} ms"
    )


async def baseline(args: argparse.Namespace) -> None:
    receivers = Receivers()
    urls = [await receivers.start() for _ in range(args.endpoints)]
    connector = aiohttp.TCPConnector(limit_per_host=4)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def send(i: int, due: float, run: Run) -> None:
            message = str(uuid.uuid4())
            run.due[message] = due
            body = json.dumps({"data": {"message_id": message}}).encode()
            await asyncio.gather(*(http.post(url, data=body) for url in urls))

        run = await open_loop(args.rate, args.seconds, send)
    await receivers.stop()
    late = [(at - run.due[m]) * 1000 for (_, m), at in receivers.arrived.items()]
    print(
        f"baseline (generator -> receivers directly, keep-alive): "
        f"{len(late)}/{len(run.due) * args.endpoints} POSTs; due -> receiver {figures(late)}"
    )


@dataclass
class Service:
    """The integrations process and what the benchmark reaches around it."""

    settings: Settings
    db: Database
    box: SecretBox
    source: asyncpg.Pool
    procs: dict[str, psutil.Process]

    def cpu(self) -> dict[str, float]:
        return {
            name: postgres_cpu(p) if name == "PostgreSQL" else cpu(p)
            for name, p in self.procs.items()
        }


async def endpoint(svc: Service, org: uuid.UUID, url: str) -> None:
    """Created as ``POST /v1/webhook-endpoints`` creates one (its rules, its event)."""
    body = EndpointCreate(url=url, event_types=["message.received"])
    async with svc.db.transaction(organization_id=org) as session:
        await endpoint_rules.create(
            session, svc.box, org, None, body, UrlPolicy(allow_loopback=True)
        )


async def through_pytake(
    args: argparse.Namespace,
    svc: Service,
    hang: bool,
    seconds: float | None = None,
    quiet: bool = False,
) -> list[float]:
    """One run through the platform; the healthy endpoints' commit -> receiver latencies
    (None in the list's place when a delivery is missing: returned as an empty list)."""
    receivers = Receivers()
    org = uuid.uuid4()
    healthy = args.endpoints - 1 if hang else args.endpoints
    targets = [await receivers.start() for _ in range(healthy)]
    if hang:
        targets.append(await receivers.start(hang=True))
    for target in targets:
        await endpoint(svc, org, target)
    conversations = [uuid.uuid4() for _ in range(args.conversations)]

    async def send(i: int, due: float, run: Run) -> None:
        event = appended(org, conversations[i % len(conversations)])
        message = event.data["message_id"]
        run.due[message] = due
        async with svc.source.acquire() as conn, conn.transaction():
            await conn.execute(
                STAGE, event.id, event.topic, event.subject, event.model_dump_json(), OUTBOX_CHANNEL
            )
        run.committed[message] = time.time()

    before = svc.cpu()
    run = await open_loop(args.rate, seconds or args.seconds, send)
    expected = len(run.due) * healthy
    await wait_for(receivers, expected, 60)
    spent = {name: used - before[name] for name, used in svc.cpu().items()}
    await receivers.stop()
    conn = await asyncpg.connect(asyncpg_dsn(svc.db.url))  # the owner: no RLS
    try:
        queued = await conn.fetch(
            "SELECT body::json->'data'->>'message_id' AS m, created_at, latency_ms "
            "FROM deliveries WHERE organization_id = $1",
            org,
        )
    finally:
        await conn.close()
    to_queue = [
        (q["created_at"].timestamp() - run.committed[q["m"]]) * 1000
        for q in queued
        if q["m"] in run.committed
    ]
    latencies = [(at - run.committed[m]) * 1000 for (_, m), at in receivers.arrived.items()]
    from_due = [(at - run.due[m]) * 1000 for (_, m), at in receivers.arrived.items()]
    lag = [(run.committed[m] - run.due[m]) * 1000 for m in run.committed]
    deliveries = len(latencies)
    if quiet:
        return latencies
    label = f"{healthy} endpoints + 1 hanging" if hang else f"{healthy} endpoints"
    print(
        f"{'hang' if hang else 'steady'}: {args.rate:g} events/s for {len(run.due) / args.rate:g} "
        f"s to {label}: {deliveries}/{expected} deliveries to the healthy ones"
    )
    print(f"  commit -> receiver   {figures(latencies)}")
    print(f"  commit -> queued     {figures(to_queue)}  (relay + consumer)")
    print(f"  due -> receiver      {figures(from_due)}  (with the generator's own lag)")
    print(f"  generator commit lag {figures(lag)}")
    attempts = [float(q["latency_ms"]) for q in queued if q["latency_ms"] is not None]
    print(f"  POST -> answer       {figures(attempts)}  (the delivery log's latency)")
    if deliveries:
        per = ", ".join(f"{n} {t / deliveries * 1000:.2f}" for n, t in spent.items())
        print(f"  CPU ms per delivery: {per}")
    return latencies if deliveries == expected else []


@dataclass
class Started:
    settings: Settings
    source_url: str
    procs: dict[str, psutil.Process]


@contextlib.contextmanager
def started(args: argparse.Namespace, infra: Infrastructure) -> Iterator[Started]:
    """The integrations service and the source's relay, each a process, ready."""
    port = free_port()
    env = {
        **os.environ,
        "PYTAKE_ENV": "test",
        "PYTAKE_STATE_DIR": str(infra.state),
        "PYTAKE_DATABASE_URL": infra.pg_url,
        "PYTAKE_KAFKA_BOOTSTRAP": infra.bootstrap,
        "PYTAKE_LOG_LEVEL": "WARNING",
        "PYTAKE_WEBHOOKS_ALLOW_LOOPBACK": "true",
        "PYTAKE_KAFKA_CONSUMER_FETCH_MAX_WAIT_MS": "100",
        "PYTAKE_DELIVERY_TIMEOUT_S": str(args.timeout),
        **(
            {"PYTAKE_ENDPOINT_CONCURRENCY": str(args.endpoint_concurrency)}
            if args.endpoint_concurrency
            else {}
        ),
        "PYTAKE_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }
    module = [sys.executable, "-m", "pytake_integrations"]
    subprocess.run([*module, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    settings = Settings(
        env="test", state_dir=infra.state, database_url=infra.pg_url, webhooks_allow_loopback=True
    )
    source_url = asyncio.run(migrated_database(infra.pg_url, "source", MIGRATIONS))
    service = relay = None
    with open(infra.state / "processes.log", "ab") as log:
        try:
            service = subprocess.Popen([*module, "serve"], env=env, stdout=log, stderr=log)
            relay = subprocess.Popen(
                [sys.executable, str(Path(__file__).parent / "_outbox_relay.py")],
                env={**env, "PYTAKE_OWN_DATABASE_URL": source_url},
                stdout=log,
                stderr=log,
            )
            wait_ready(f"http://127.0.0.1:{port}", process=service)
            time.sleep(3)  # the consumer joins its group
            procs = {
                "integrations": psutil.Process(service.pid),
                "relay": psutil.Process(relay.pid),
                "bench (generator + receivers)": psutil.Process(),
            }
            if infra.postmaster is not None:
                procs["PostgreSQL"] = infra.postmaster
            if infra.broker is not None and infra.broker.proc is not None:
                procs["Tansu"] = psutil.Process(infra.broker.proc.pid)
            yield Started(settings, source_url, procs)
        finally:
            stop(relay)
            stop(service)


async def run(args: argparse.Namespace, up: Started) -> int:
    await baseline(args)
    db = Database(up.settings.service_database_url())
    source = await asyncpg.create_pool(asyncpg_dsn(up.source_url), min_size=4, max_size=8)
    svc = Service(up.settings, db, SecretBox(up.settings.secret), source, up.procs)
    try:
        if args.warmup:
            print(f"warm-up: {args.warmup:g} s at the same rate (pools, caches; not counted)")
            await through_pytake(args, svc, hang=False, seconds=args.warmup, quiet=True)
        steady = await through_pytake(args, svc, hang=False)
        ok = bool(steady) and pct(steady, 95) < 500
        if not args.skip_hang:
            hung = await through_pytake(args, svc, hang=True)
            if hung and steady:
                added = max(hung) - max(steady)
                print(
                    f"  the hanging receiver moved the others' worst delivery by {added:+.0f} ms "
                    f"and their p99 by {pct(hung, 99) - pct(steady, 99):+.0f} ms against the "
                    "steady run (target: under 1,000 ms later)"
                )
                ok = ok and added < 1000
            else:
                ok = False
    finally:
        await source.close()
        await db.dispose()
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument(
        "--endpoint-concurrency", type=int, default=0, help="the service's cap (0: its default)"
    )
    parser.add_argument("--warmup", type=float, default=5, help="seconds, not counted")
    parser.add_argument("--skip-hang", action="store_true")
    args = parser.parse_args()
    print(box())
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    with infrastructure("webhooks") as infra, started(args, infra) as up:
        status = asyncio.run(run(args, up))
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    sys.exit(status)


if __name__ == "__main__":
    main()
