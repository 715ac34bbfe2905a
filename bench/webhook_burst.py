"""Benchmark: an open-loop burst of signed webhooks through the gateway, as Meta sends them.

Meta does not wait for our answers: it sends at its own rate. So this generator
schedules request ``i`` at ``start + i / rate`` and sends it then, whether or not
earlier ones were answered, and measures each acknowledgement from its *scheduled*
time (a stalled server is charged for the queue it builds, unlike closed-loop
clients, which slow down with it and hide it).

Starts the whole platform (every service a process; embedded PostgreSQL and Tansu
unless PYTAKE_DATABASE_URL / PYTAKE_KAFKA_BOOTSTRAP are set), registers a tenant and
a number, and then:

1. prints a calibration figure for this box (``_measure.calibrate``) so runs on a
   drifting VM can be compared;
2. **baseline**: the same schedule of the same signed bodies against a do-nothing
   endpoint (bench/_bare_endpoint.py, its own process) with the platform up;
3. **burst**: ``--rate`` single-message webhooks per second for ``--seconds`` through
   the gateway, senders spread over ``--customers`` customers; ack p50/p95/p99/max,
   non-2xx, and CPU per webhook of every process during the burst;
4. waits until every accepted message is in its conversation (conversations'
   database), counting lost and duplicated ones: drain time after the burst's last
   webhook and the end-to-end rate; the target is every message within 60 s;
5. ``--search``: short steps at rising rates (``--step-seconds`` each, the platform
   drained between steps) up to the highest one whose ack p99 stays under
   ``--target-ms`` with no non-2xx.

Exit status 1 when the burst misses a target (ack p99, non-2xx, lost, duplicated,
drain). Loopback only; bounded by rate x seconds.

``--pause-downstream``: the services downstream of the intake (:data:`DOWNSTREAM`) are
stopped (SIGSTOP) for the burst and continued after it, so the acknowledgements do not
compete with them for CPU; how much of the ack latency is that contention. They catch
up after the burst (their consumer groups may rebalance meanwhile: a redelivery is
deduplicated, and the lost/duplicated counts still check it); the drain time is then
printed but not judged.

``--downstream-nice N``: the same services keep running but at ``nice`` N (their
threads too) from the burst to the drained platform, as a deployment that reserves CPU
for the edge (its own pods' CPU requests) would run them: the intake is served first
and the consumers take the CPU left over. The drain is judged as usual. Not the
default: the default run gives every process the same share.

``--statuses``: the burst is status webhooks (sent, delivered, read of each message,
as Meta sends three per outbound message) of messages PyTake did not send; "drained"
is then every status in whatsapp-gateway's status rows.

Usage: python bench/webhook_burst.py [--rate 400] [--seconds 30] [--customers 2000]
       [--statuses] [--pause-downstream] [--downstream-nice N] [--search] [--target-ms 100]
       [--ready-timeout 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).parent))

from _measure import LeanClient, box, cpu, pct, platform, postgres_cpu, reniced
from webhook_intake import bare_endpoint, payload

from pytake_api_gateway.upstream import PoolExhausted, UpstreamError
from pytake_common.pgtenant import asyncpg_dsn
from pytake_devstack.mainloop import DELIVERY_ORDER, MainLoop, SimNumber

#: How long one webhook may stay unanswered before it counts as not answered (Meta's own
#: timeout is longer; anything near this has long missed every target).
ANSWER_TIMEOUT_S = 10.0
#: Every accepted message must be in its conversation within this after the burst.
DRAIN_TARGET_S = 60.0


@dataclass
class Burst:
    rate: float
    seconds: float
    #: ack latency from each request's scheduled time, for the answered ones
    latencies: list[float] = field(default_factory=list)
    #: "HTTP 503", "timeout", ...: how many of each
    failures: Counter[str] = field(default_factory=Counter)
    #: wamids the server acknowledged with 2xx
    accepted: list[str] = field(default_factory=list)
    #: how late the generator itself sent (its own lag: should stay near 0)
    send_lag: list[float] = field(default_factory=list)
    ended_at: float = 0.0

    def line(self, name: str) -> str:
        if not self.latencies:
            return f"  {name:<8} nothing answered"
        ack = (
            "  ".join(f"p{p} {pct(self.latencies, p) * 1000:7.1f}" for p in (50, 95, 99))
            + f"  max {max(self.latencies) * 1000:7.1f} ms"
        )
        failed = ", ".join(f"{k} x{v}" for k, v in self.failures.most_common()) or "none"
        return (
            f"  {name:<8} {self.rate:5.0f}/s x {self.seconds:.0f} s  ack {ack}"
            f"   non-2xx/unanswered: {failed}   generator lag p99 "
            f"{pct(self.send_lag, 99) * 1000:.1f} ms"
        )


def bodies_for(
    number: SimNumber, n: int, customers: int, tag: str, statuses: bool = False
) -> list[tuple[bytes, str]]:
    """``n`` signed single-message webhooks from ``customers`` distinct senders (or, with
    ``statuses``, single-status webhooks: sent, delivered, read of n / 3 messages)."""
    rng = random.Random(f"{tag}-{n}")
    wa_ids = [f"1555{rng.randrange(10**7):07d}" for _ in range(customers)]
    if statuses:
        return [
            status_payload(number.phone_number_id, wa_ids[i // 3 % customers], f"{tag}{i // 3}", i)
            for i in range(n)
        ]
    return [payload(number.phone_number_id, wa_ids[i % customers], f"{tag} {i}") for i in range(n)]


def status_payload(phone_number_id: str, wa_id: str, message: str, i: int) -> tuple[bytes, str]:
    """One status webhook as Meta sends it (sent and delivered carry ``pricing``) for a
    message PyTake did not send (the send log has no row for it: looked up, not found), and
    its key ``wamid:status``."""
    wamid, state = f"wamid.BENCHOUT{message}", DELIVERY_ORDER[i % 3]
    status: dict[str, object] = {
        "id": wamid,
        "status": state,
        "timestamp": str(int(time.time())),
        "recipient_id": wa_id,
    }
    if state != "read":
        status["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "marketing"}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100", "phone_number_id": phone_number_id},
        "statuses": [status],
    }
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(body, separators=(",", ":")).encode(), f"{wamid}:{state}"


async def open_loop(
    url: str, bodies: list[tuple[bytes, str]], rate: float, app_secret: str, connections: int
) -> Burst:
    """Send ``bodies`` at ``rate`` per second on a fixed schedule; never wait for answers."""
    burst = Burst(rate, len(bodies) / rate)
    client = LeanClient(url, connections)
    signed = [
        (raw, wamid, "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest())
        for raw, wamid in bodies
    ]
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []

    async def one(scheduled: float, raw: bytes, wamid: str, sig: str) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"x-hub-signature-256", sig.encode()),
        ]
        try:
            status, _ = await asyncio.wait_for(
                client.request("POST", b"/webhooks/whatsapp", headers, raw), ANSWER_TIMEOUT_S
            )
        except TimeoutError:  # UpstreamTimeout included
            burst.failures["unanswered in 10 s"] += 1
            return
        except PoolExhausted:  # every generator connection waited on for 5 s: a stall
            burst.failures["no free generator connection in 5 s"] += 1
            return
        except (OSError, UpstreamError) as exc:
            burst.failures[type(exc).__name__] += 1
            return
        burst.latencies.append(loop.time() - scheduled)
        if 200 <= status < 300:
            burst.accepted.append(wamid)
        else:
            burst.failures[f"HTTP {status}"] += 1

    start = loop.time() + 0.2
    for i, (raw, wamid, sig) in enumerate(signed):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        burst.send_lag.append(max(0.0, loop.time() - scheduled))
        tasks.append(asyncio.create_task(one(scheduled, raw, wamid, sig)))
    await asyncio.gather(*tasks)
    burst.ended_at = time.time()
    client.close()
    return burst


class Conversations:
    """Counts accepted messages in conversations' own database (or, for statuses, the
    status rows of whatsapp-gateway's, keyed ``wamid:status``)."""

    QUERY = (
        "SELECT count(*), count(DISTINCT wamid), max(extract(epoch FROM created_at))::float8"
        " FROM messages WHERE direction = 'inbound' AND wamid = ANY($1::text[])"
    )
    STATUSES = (
        "SELECT count(*), count(DISTINCT (wamid, status)),"
        " max(extract(epoch FROM created_at))::float8"
        " FROM status_updates WHERE wamid || ':' || status = ANY($1::text[])"
    )

    def __init__(self, conn: asyncpg.Connection, query: str = QUERY) -> None:
        self.conn = conn
        self.query = query

    async def drain(self, wamids: list[str], since: float) -> tuple[int, int, float]:
        """Wait until every wamid is in (or the drain target and a margin passed); return
        (rows, distinct wamids, seconds after ``since`` that the last one landed)."""
        while True:
            total, distinct, last = await self.conn.fetchrow(self.query, wamids)
            if distinct >= len(wamids) or time.time() - since > DRAIN_TARGET_S * 2:
                return total, distinct, max(0.0, (last or since) - since)
            await asyncio.sleep(0.25)


#: What --pause-downstream stops during the burst: the consumers of the intake's events.
DOWNSTREAM = ("automation", "campaigns", "contacts", "conversations", "integrations", "tenants")


@contextlib.contextmanager
def paused(procs: dict[str, psutil.Process], names: tuple[str, ...]) -> Iterator[None]:
    """``names`` stopped (SIGSTOP) while inside, continued after, whatever happens."""
    stopped = [procs[name] for name in names if name in procs]
    for proc in stopped:
        proc.suspend()
    try:
        yield
    finally:
        for proc in stopped:
            proc.resume()


#: The PostgreSQL backends of this database are the intake's PostgreSQL work.
GATEWAY_DATABASE = "pytake_whatsapp_gateway"
RECORDED = "SELECT count(*) FROM webhook_deliveries"


def cpu_snapshot(procs: dict[str, psutil.Process]) -> dict[str, float]:
    """CPU seconds so far of every process; ``pg:whatsapp-gateway``: the live PostgreSQL
    backends of whatsapp-gateway's database (by their process titles), summed."""
    snapshot = {
        name: postgres_cpu(p) if name == "postgres" else cpu(p) for name, p in procs.items()
    }
    master = procs.get("postgres")
    if master is not None:
        snapshot["pg:whatsapp-gateway"] = sum(
            cpu(backend) for backend in database_backends(master, GATEWAY_DATABASE)
        )
    return snapshot


def write_batches(url: str) -> tuple[float, float]:
    """(deliveries, statements) of whatsapp-gateway's fast-path writes so far, from its
    metrics ((0, 0) when it exports none)."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0, 0.0
    total = {"_sum": 0.0, "_count": 0.0}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        for suffix in total:
            if name.startswith(f"pytake_webhook_write_batch_deliveries{suffix}"):
                total[suffix] += float(value)
    return total["_sum"], total["_count"]


def database_backends(master: psutil.Process, database: str) -> list[psutil.Process]:
    """The backends of ``master`` connected to ``database`` ('postgres: user db host ...')."""
    found = []
    for child in master.children():
        try:
            title = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if f" {database} " in f"{title} ":
            found.append(child)
    return found


async def bench(args: argparse.Namespace, running: object) -> int:
    stack = running.stack  # type: ignore[attr-defined]
    procs: dict[str, psutil.Process] = running.processes()  # type: ignore[attr-defined]
    loop = MainLoop(stack.url("api-gateway"), stack.url("meta-simulator"))
    tenant = await loop.register("Burst Org")
    number = await loop.connect_number(tenant)
    await loop.aclose()
    dsn = asyncpg_dsn(stack.cfg.database_url, database="pytake_conversations")
    conversations = Conversations(await asyncpg.connect(dsn))
    if args.statuses:  # the warm-up's messages, then the burst's statuses
        statuses = Conversations(
            await asyncpg.connect(asyncpg_dsn(stack.cfg.database_url, database=GATEWAY_DATABASE)),
            Conversations.STATUSES,
        )
    n = int(args.rate * args.seconds)
    print(box())

    # A short warm-up at a tenth of the rate: connections, caches, first contacts.
    warm = await open_loop(
        stack.url("api-gateway"),
        bodies_for(number, max(20, n // 20), args.customers, "warm"),
        max(10.0, args.rate / 10),
        number.app_secret,
        args.connections,
    )
    await conversations.drain(warm.accepted, warm.ended_at)

    bodies = bodies_for(number, n, args.customers, "burst", args.statuses)
    if args.statuses:
        await conversations.conn.close()
        conversations = statuses
    with bare_endpoint() as bare_url:
        bare = await open_loop(bare_url, bodies, args.rate, number.app_secret, args.connections)

    idle0, t0 = cpu_snapshot(procs), time.monotonic()
    await asyncio.sleep(3)
    idle1, t1 = cpu_snapshot(procs), time.monotonic()
    idle = {k: (idle1[k] - idle0[k]) / (t1 - t0) for k in idle1}

    gateway_db = await asyncpg.connect(
        asyncpg_dsn(stack.cfg.database_url, database=GATEWAY_DATABASE)
    )
    recorded0 = await gateway_db.fetchval(RECORDED)
    batches0 = write_batches(stack.url("whatsapp-gateway"))
    before, started = cpu_snapshot(procs), time.monotonic()
    with reniced(procs, DOWNSTREAM, args.downstream_nice):
        with paused(procs, DOWNSTREAM if args.pause_downstream else ()):
            burst = await open_loop(
                stack.url("api-gateway"), bodies, args.rate, number.app_secret, args.connections
            )
            during = time.monotonic() - started
            after_burst = cpu_snapshot(procs)
        batches1 = write_batches(stack.url("whatsapp-gateway"))
        recorded1 = await gateway_db.fetchval(RECORDED)
        total, distinct, drain = await conversations.drain(burst.accepted, burst.ended_at)
    after_drain, drained = cpu_snapshot(procs), time.monotonic() - started
    recorded2 = await gateway_db.fetchval(RECORDED)
    await gateway_db.close()

    kind = "single-status (sent, delivered, read)" if args.statuses else "single-message"
    print(
        f"open-loop burst: {n} signed {kind} webhooks at {args.rate:.0f}/s "
        f"over {args.customers} customers, ack measured from each request's scheduled time"
    )
    if args.pause_downstream:
        print(f"  downstream stopped during the burst: {', '.join(DOWNSTREAM)}")
    if args.downstream_nice:
        print(
            f"  downstream at nice {args.downstream_nice} from the burst to drained "
            f"(the edge served first): {', '.join(DOWNSTREAM)}"
        )
    print(bare.line("bare"))
    print(burst.line("gateway"))
    if bare.latencies and burst.latencies:
        print(
            "  gateway / bare: "
            + "  ".join(
                f"p{p} {pct(burst.latencies, p) / max(pct(bare.latencies, p), 1e-6):.1f}x"
                for p in (50, 95, 99)
            )
        )
    accepted = len(burst.accepted)
    lost, duplicated = accepted - distinct, total - distinct
    what = "statuses recorded" if args.statuses else "messages in their conversations"
    print(
        f"pipeline: {distinct} of {accepted} accepted {what}, "
        f"{lost} lost, {duplicated} duplicated; the last landed {drain:.1f} s after the "
        f"burst's last webhook; {distinct / max(drained, 1e-6):,.0f} messages/s end to end"
    )
    # Per webhook the gateway recorded (webhook_deliveries): requests the generator never
    # sent, or gave up on while the server still worked on them, would skew a count by
    # what was sent or answered.
    n_burst, n_all = max(recorded1 - recorded0, 1), max(recorded2 - recorded0, 1)
    print(
        f"CPU per webhook recorded, net of idle (ms): during the burst ({during:.1f} s, "
        f"{recorded1 - recorded0} recorded of {n} scheduled) | to drained "
        f"({recorded2 - recorded0} recorded)"
    )
    for name in sorted(procs):
        net_burst = after_burst[name] - before[name] - idle[name] * during
        net_all = after_drain[name] - before[name] - idle[name] * drained
        print(f"  {name:<18} {net_burst / n_burst * 1000:7.2f} | {net_all / n_all * 1000:7.2f}")
    ack_path = [k for k in ("api-gateway", "whatsapp-gateway") if k in procs]
    burst_ms = sum(after_burst[k] - before[k] - idle[k] * during for k in ack_path) / n_burst * 1000
    all_ms = sum(after_drain[k] - before[k] - idle[k] * drained for k in procs) / n_all * 1000
    print(
        f"  {'api + whatsapp gw':<18} {burst_ms:7.2f} (with its outbox relay)   "
        f"all processes to drained: {all_ms:.2f}"
    )
    if "pg:whatsapp-gateway" in after_burst:
        # Backends that exited meanwhile are left out (the pools keep theirs open).
        pg_ms = (
            (
                after_burst["pg:whatsapp-gateway"]
                - before["pg:whatsapp-gateway"]
                - idle["pg:whatsapp-gateway"] * during
            )
            / n_burst
            * 1000
        )
        print(
            f"  {'whatsapp gw PG':<18} {pg_ms:7.2f} (its database's backends)   "
            f"ack path (api + whatsapp gw + its PostgreSQL): {burst_ms + pg_ms:.2f} ms"
        )

    if batches1[1] > batches0[1]:
        print(
            f"  group commit: {batches1[0] - batches0[0]:.0f} deliveries written by "
            f"{batches1[1] - batches0[1]:.0f} statements "
            f"({(batches1[0] - batches0[0]) / (batches1[1] - batches0[1]):.1f} a statement)"
        )
    if burst.send_lag and pct(burst.send_lag, 99) > 0.05:
        print(
            f"WARNING: the generator itself sent late (p99 {pct(burst.send_lag, 99) * 1000:.0f}"
            " ms): the box is short of CPU; this run measures it, not the gateway's rate"
        )
    missed = []
    if not burst.latencies or pct(burst.latencies, 99) * 1000 >= args.target_ms:
        missed.append(f"ack p99 >= {args.target_ms:.0f} ms")
    if sum(burst.failures.values()):
        missed.append("non-2xx or unanswered webhooks")
    if lost or duplicated:
        missed.append("lost or duplicated messages")
    if drain > DRAIN_TARGET_S and not args.pause_downstream:  # stopped: they start late
        missed.append(f"drain over {DRAIN_TARGET_S:.0f} s")

    if args.search:
        await search(args, stack, number, conversations)
    await conversations.conn.close()
    print("targets: " + ("met" if not missed else "MISSED: " + "; ".join(missed)))
    return 1 if missed else 0


async def search(
    args: argparse.Namespace, stack: object, number: SimNumber, conversations: Conversations
) -> None:
    """Rising rates, each a short step, until the ack target breaks."""
    print(
        f"rate search: {args.step_seconds:.0f} s steps, target ack p99 < {args.target_ms:.0f} ms "
        "and no non-2xx"
    )
    best = 0.0
    rate = args.search_from
    while rate <= args.search_to:
        n = int(rate * args.step_seconds)
        bodies = bodies_for(number, n, args.customers, f"step{rate:.0f}")
        step = await open_loop(
            stack.url("api-gateway"),  # type: ignore[attr-defined]
            bodies,
            rate,
            number.app_secret,
            args.connections,
        )
        print(step.line("step"))
        await conversations.drain(step.accepted, step.ended_at)
        ok = (
            step.latencies
            and pct(step.latencies, 99) * 1000 < args.target_ms
            and not sum(step.failures.values())
        )
        if not ok:
            break
        best = rate
        rate += args.search_step
    print(f"  highest rate meeting the ack target: {best:.0f} webhooks/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--target-ms", type=float, default=100.0)
    parser.add_argument(
        "--statuses",
        action="store_true",
        help="status webhooks (sent, delivered, read per message) instead of messages",
    )
    parser.add_argument(
        "--pause-downstream",
        action="store_true",
        help="stop the intake's downstream consumers during the burst (CPU contention)",
    )
    parser.add_argument(
        "--downstream-nice",
        type=int,
        default=0,
        help="run the intake's downstream consumers at this nice value (edge served first)",
    )
    parser.add_argument("--search", action="store_true")
    parser.add_argument("--search-from", type=float, default=100.0)
    parser.add_argument("--search-to", type=float, default=1000.0)
    parser.add_argument("--search-step", type=float, default=50.0)
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument(
        "--ready-timeout", type=float, default=60.0, help="seconds each process may take to start"
    )
    args = parser.parse_args()
    if args.statuses and args.search:
        parser.error("--search steps are message webhooks: not with --statuses")
    with platform("burst", ready_timeout=args.ready_timeout) as running:
        code = uvloop.run(bench(args, running))
    sys.exit(code)


if __name__ == "__main__":
    main()
