"""Benchmark: signed inbound webhooks through the gateway, and inbound-to-inbox latency.

Starts the whole platform on this machine (embedded PostgreSQL and Tansu unless
PYTAKE_DATABASE_URL / PYTAKE_KAFKA_BOOTSTRAP are set), registers a tenant and a
number, then

1. posts N distinct signed webhooks (one text message each) with C concurrent
   clients to a bare do-nothing endpoint (bench/_bare_endpoint.py, its own
   process), then the same bodies with the same client to the gateway, and
   reports both rates and acknowledgement latencies (what Meta waits for) and
   their ratio;
2. waits until every accepted message is in its conversation (counting lost and
   duplicated ones in conversations' database) and reports the pipeline rate and,
   per message, webhook sent -> row in its conversation (p50/p95/p99/max);
3. measures, for a sample of messages sent one at a time, how long it takes
   from the webhook being acknowledged until the message is visible in the
   agent's conversation through the API (outbox → Kafka → conversations).

Loopback only; bounded by N. Usage: python bench/webhook_intake.py [--n 2000] [--c 16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from _measure import pct, platform

from pytake_common.pgtenant import asyncpg_dsn, to_asyncpg_url
from pytake_devstack.infra import free_port, wait_for_port
from pytake_devstack.mainloop import MainLoop, poll, text_webhook
from pytake_devstack.stack import LocalStack


def payload(phone_number_id: str, wa_id: str, text: str) -> tuple[bytes, str]:
    return text_webhook(phone_number_id, wa_id, text, name="Bench", tag="BENCH")


@dataclass
class Run:
    latencies: list[float]
    errors: int
    elapsed: float
    #: "HTTP 503", "ReadTimeout", ...: how many of each error.
    kinds: Counter[str]
    #: wamid -> wall-clock time its webhook left the client.
    sent_at: dict[str, float]

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed


async def fire(
    base_url: str, bodies: list[tuple[bytes, str]], concurrency: int, app_secret: str
) -> Run:
    """Post every signed body with ``concurrency`` clients (one shared keep-alive pool)."""
    latencies: list[float] = []
    sent_at: dict[str, float] = {}
    errors = 0
    kinds: Counter[str] = Counter()
    queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    client = httpx.AsyncClient(base_url=base_url, limits=httpx.Limits(max_connections=concurrency))

    async def worker() -> None:
        nonlocal errors
        while not queue.empty():
            raw, wamid = queue.get_nowait()
            sig = "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()
            sent_at[wamid] = time.time()
            t0 = time.perf_counter()
            try:
                r = await client.post(
                    "/webhooks/whatsapp",
                    content=raw,
                    headers={"Content-Type": "application/json", "X-Hub-Signature-256": sig},
                )
            except httpx.HTTPError as exc:  # counted, not fatal: Meta would retry it
                errors += 1
                kinds[type(exc).__name__] += 1
                continue
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                errors += 1
                kinds[f"HTTP {r.status_code}"] += 1

    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    elapsed = time.perf_counter() - start
    await client.aclose()
    return Run(latencies, errors, elapsed, kinds, sent_at)


def report(name: str, run: Run) -> None:
    ack = "   ".join(f"p{p} {pct(run.latencies, p) * 1000:6.1f} ms" for p in (50, 95, 99))
    failed = ", ".join(f"{k} x{v}" for k, v in run.kinds.most_common()) or "none"
    print(f"  {name:<8} {run.rate:>7,.0f} webhooks/s   ack {ack}   not 200: {failed}")


@contextlib.contextmanager
def bare_endpoint() -> Iterator[str]:
    """The do-nothing endpoint (bench/_bare_endpoint.py) as its own process on this box."""
    port = free_port()
    script = Path(__file__).with_name("_bare_endpoint.py")
    process = subprocess.Popen([sys.executable, str(script), str(port)])
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


async def bench(stack: LocalStack, n: int, concurrency: int, samples: int) -> None:
    loop = MainLoop(stack.url("api-gateway"), stack.url("meta-simulator"))
    tenant = await loop.register("Bench Org")
    number = await loop.connect_number(tenant)
    gw = httpx.AsyncClient(base_url=stack.url("api-gateway"))
    bodies = [payload(number.phone_number_id, f"1555{i % 500:07d}", f"msg {i}") for i in range(n)]

    # The same signed bodies, the same concurrency and client, the platform up (idle) in
    # both phases: first at the bare endpoint, then at the gateway.
    with bare_endpoint() as bare_url:
        bare = await fire(bare_url, bodies, concurrency, number.app_secret)
    start = time.perf_counter()
    run = await fire(stack.url("api-gateway"), bodies, concurrency, number.app_secret)
    print(f"webhook acknowledgement: {n} signed single-message webhooks, {concurrency} clients")
    report("bare", bare)
    report("gateway", run)
    print(
        f"  gateway / bare: rate {run.rate / bare.rate:.2f}x   "
        + "   ".join(
            f"ack p{p} {pct(run.latencies, p) / pct(bare.latencies, p):.1f}x" for p in (50, 95, 99)
        )
    )

    # Every accepted message must reach its conversation exactly once.
    dsn = asyncpg_dsn(to_asyncpg_url(stack.cfg.database_url, database="pytake_conversations"))
    conn = await asyncpg.connect(dsn)
    wamids = [w for _, w in bodies]
    accepted = n - run.errors  # a refused or unanswered webhook is Meta's to retry
    query = (
        "SELECT count(*), count(DISTINCT wamid) FROM messages "
        "WHERE direction = 'inbound' AND wamid = ANY($1::text[])"
    )
    while True:
        total, distinct = await conn.fetchrow(query, wamids)
        if total >= accepted or time.perf_counter() - start > 900:
            break
        await asyncio.sleep(0.5)
    drained = time.perf_counter() - start
    # Webhook sent -> its message row in conversations (what the agent's API reads);
    # created_at is the inserting transaction's start, on this box's clock.
    rows = await conn.fetch(
        "SELECT wamid, extract(epoch FROM created_at)::float8 AS at FROM messages "
        "WHERE direction = 'inbound' AND wamid = ANY($1::text[])",
        wamids,
    )
    await conn.close()
    print(
        f"pipeline: {total} of {accepted} accepted messages in conversations "
        f"({max(0, accepted - distinct)} lost, "
        f"{total - distinct} duplicated) {drained:.1f} s after the first webhook "
        f"= {n / drained:,.0f} messages/s end to end"
    )
    e2e = [max(0.0, r["at"] - run.sent_at[r["wamid"]]) for r in rows]
    if e2e:
        print(
            f"  webhook → in its conversation, under this load ({len(e2e)} messages): "
            f"p50 {pct(e2e, 50) * 1000:.0f} ms   p95 {pct(e2e, 95) * 1000:.0f} ms   "
            f"p99 {pct(e2e, 99) * 1000:.0f} ms   max {max(e2e) * 1000:.0f} ms"
        )

    visible: list[float] = []
    for i in range(samples):
        raw, wamid = payload(number.phone_number_id, "15559990000", f"sample {i}")
        sig = "sha256=" + hmac.new(number.app_secret.encode(), raw, hashlib.sha256).hexdigest()
        r = await gw.post(
            "/webhooks/whatsapp",
            content=raw,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": sig},
        )
        acked = time.perf_counter()
        r.raise_for_status()
        conv_id = None

        async def seen(wamid: str = wamid) -> bool | None:
            nonlocal conv_id
            if conv_id is None:
                items = (
                    await loop.gw.get(
                        "/v1/conversations", headers=tenant.headers, params={"limit": 100}
                    )
                ).json()["items"]
                for c in items:
                    if c["wa_id"] == "15559990000":
                        conv_id = c["id"]
                if conv_id is None:
                    return None
            msgs = await loop.messages(tenant, conv_id)
            return True if any(m.get("wamid") == wamid for m in msgs[-5:]) else None

        await poll(seen, "sample message", timeout=30, interval=0.005)
        visible.append(time.perf_counter() - acked)
    print(f"inbound → visible in the agent's conversation (sequential, {samples} samples):")
    print(
        f"  p50 {pct(visible, 50) * 1000:.0f} ms   p95 {pct(visible, 95) * 1000:.0f} ms   "
        f"max {max(visible) * 1000:.0f} ms   mean {statistics.mean(visible) * 1000:.0f} ms"
    )
    await gw.aclose()
    await loop.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--c", type=int, default=16)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    with platform("intake") as running:
        asyncio.run(bench(running.stack, args.n, args.c, args.samples))


if __name__ == "__main__":
    main()
