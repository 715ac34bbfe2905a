"""Benchmark: signed inbound webhooks through the gateway, and inbound-to-inbox latency.

Starts the whole platform on this machine (embedded PostgreSQL and Tansu unless
PYTAKE_DATABASE_URL / PYTAKE_KAFKA_BOOTSTRAP are set), registers a tenant and a
number, then

1. posts N distinct signed webhooks (one text message each) with C concurrent
   clients to the gateway and reports the acknowledgement latency (what Meta
   waits for) and the rate;
2. waits until every accepted message is in its conversation (counting lost and
   duplicated ones in conversations' database) and reports the pipeline rate;
3. measures, for a sample of messages sent one at a time, how long it takes
   from the webhook being acknowledged until the message is visible in the
   agent's conversation through the API (outbox → Kafka → conversations).

Loopback only; bounded by N. Usage: python bench/webhook_intake.py [--n 2000] [--c 16]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

from pytake_common.outbox import plain_dsn
from pytake_common.settings import to_asyncpg_url
from pytake_devstack.infra import EmbeddedPostgres, TansuBroker
from pytake_devstack.mainloop import MainLoop, poll
from pytake_devstack.stack import LocalStack


def payload(phone_number_id: str, wa_id: str, text: str) -> tuple[bytes, str]:
    wamid = "wamid.BENCH" + secrets.token_hex(12)
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550100",
                                "phone_number_id": phone_number_id,
                            },
                            "contacts": [{"profile": {"name": "Bench"}, "wa_id": wa_id}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": wamid,
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(body).encode(), wamid


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def bench(stack: LocalStack, n: int, concurrency: int, samples: int) -> None:
    loop = MainLoop(stack.url("api-gateway"), stack.url("meta-simulator"))
    tenant = await loop.register("Bench Org")
    number = await loop.connect_number(tenant)
    gw = httpx.AsyncClient(
        base_url=stack.url("api-gateway"), limits=httpx.Limits(max_connections=concurrency)
    )
    bodies = [payload(number.phone_number_id, f"1555{i % 500:07d}", f"msg {i}") for i in range(n)]
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)

    async def worker() -> None:
        nonlocal errors
        while not queue.empty():
            raw, _ = queue.get_nowait()
            sig = "sha256=" + hmac.new(number.app_secret.encode(), raw, hashlib.sha256).hexdigest()
            t0 = time.perf_counter()
            r = await gw.post(
                "/webhooks/whatsapp",
                content=raw,
                headers={"Content-Type": "application/json", "X-Hub-Signature-256": sig},
            )
            latencies.append(time.perf_counter() - t0)
            errors += r.status_code != 200

    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    elapsed = time.perf_counter() - start
    print(f"webhook intake through the gateway: {n} deliveries, {concurrency} concurrent clients")
    print(
        f"  rate {n / elapsed:,.0f}/s   ack p50 {pct(latencies, 50) * 1000:.1f} ms   "
        f"p95 {pct(latencies, 95) * 1000:.1f} ms   p99 {pct(latencies, 99) * 1000:.1f} ms   "
        f"non-200: {errors}"
    )

    # Every accepted message must reach its conversation exactly once.
    dsn = plain_dsn(to_asyncpg_url(stack.cfg.database_url, database="pytake_conversations"))
    conn = await asyncpg.connect(dsn)
    wamids = [w for _, w in bodies]
    query = (
        "SELECT count(*), count(DISTINCT wamid) FROM messages "
        "WHERE direction = 'inbound' AND wamid = ANY($1::text[])"
    )
    while True:
        total, distinct = await conn.fetchrow(query, wamids)
        if total >= n or time.perf_counter() - start > 900:
            break
        await asyncio.sleep(0.5)
    drained = time.perf_counter() - start
    await conn.close()
    print(
        f"pipeline: {total} of {n} messages in conversations ({n - distinct} lost, "
        f"{total - distinct} duplicated) {drained:.1f} s after the first webhook "
        f"= {n / drained:,.0f} messages/s end to end"
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
    state = Path(tempfile.mkdtemp(prefix="pytake-bench-"))
    pg = broker = None
    db_url = os.environ.get("PYTAKE_DATABASE_URL")
    if not db_url:
        pg = EmbeddedPostgres(state / "pg")
        db_url = pg.start()
    bootstrap = os.environ.get("PYTAKE_KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = TansuBroker()
        bootstrap = broker.start()
    stack = LocalStack(
        db_url,
        bootstrap,
        state,
        extra_env={"PYTAKE_LOG_LEVEL": "WARNING", "PYTAKE_RATELIMIT_ENABLED": "false"},
    )
    try:
        stack.start()
        asyncio.run(bench(stack, args.n, args.c, args.samples))
    finally:
        stack.stop()
        if broker:
            broker.stop()
        if pg:
            pg.stop()


if __name__ == "__main__":
    main()
