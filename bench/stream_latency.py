"""Benchmark: webhook acknowledged → frame on a connected agent's realtime stream.

Starts the whole platform on this machine (embedded PostgreSQL and Tansu unless
PYTAKE_DATABASE_URL / PYTAKE_KAFKA_BOOTSTRAP are set), registers two
organizations, connects a WhatsApp number to the first, and opens one
``WebSocket /v1/stream`` per organization THROUGH THE API GATEWAY with the
owner's JWT. Then

1. sequential: --n signed single-message webhooks through the gateway, one at a
   time with a random --gap between them; for each, the time from the webhook's
   200 acknowledgement (as the client sees it) to the arrival of the
   ``message.created`` frame carrying its wamid on the agent's socket;
2. loaded: --load-n webhooks sent open-loop at --rate per second (--c clients at
   most in flight), every one measured the same way;
3. prints n, p50/p95/p99/max and the frames lost (not arrived --timeout seconds
   after the last webhook) per run, and how many frames the second
   organization's agent, connected all along, received (must be 0);
4. splits the sequential latency along the path with timestamps taken on the
   way: ack → the Kafka record's timestamp (the outbox relay's produce call,
   read by an observer consumer) → the conversations transaction that stored
   the message (its ``created_at``) → that transaction's commit (the stream
   NOTIFY, heard by a LISTEN connection of this script) → the frame on a second
   socket connected straight to conversations → the frame through the gateway;
5. CPU of each process over --idle seconds with nothing happening (the cost of
   the consumers' fetch polling).

Target (issue #7): p95 < 200 ms. Loopback only; bounded by --n/--load-n.
Usage: python bench/stream_latency.py [--n 100] [--load-n 150] [--rate 5]
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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp
import asyncpg
import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))

from _measure import TopicObserver, idle_cpu, pct, platform
from aiokafka.structs import ConsumerRecord
from webhook_intake import payload

from pytake_common.pgtenant import asyncpg_dsn, to_asyncpg_url
from pytake_conversations.stream import CHANNEL as STREAM_CHANNEL
from pytake_devstack.mainloop import MainLoop, SimNumber, Tenant
from pytake_devstack.stack import LocalStack

MESSAGE_TOPIC = "pytake.whatsapp.message"


@dataclass
class Socket:
    """One agent's stream: when each wamid's ``message.created`` frame arrived."""

    name: str
    arrived: dict[str, float] = field(default_factory=dict)
    stored_at: dict[str, float] = field(default_factory=dict)
    #: wamid → the frame's id (the stream event id, also in the NOTIFY payload)
    frame_id: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    waiters: dict[str, asyncio.Future[float]] = field(default_factory=dict)
    closed: str | None = None

    async def read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            now = time.time()
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            if frame.get("type") == "pong":
                continue
            self.frames += 1
            if frame.get("type") != "message.created":
                continue
            message = frame["data"]["message"]
            wamid = message.get("wamid")
            if not wamid:
                continue
            self.arrived[wamid] = now
            self.frame_id[wamid] = int(frame["id"])
            self.stored_at[wamid] = datetime.fromisoformat(message["created_at"]).timestamp()
            waiter = self.waiters.pop(wamid, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(now)
        self.closed = f"closed ({ws.close_code})"

    def expect(self, wamid: str) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if wamid in self.arrived:
            fut.set_result(self.arrived[wamid])
        else:
            self.waiters[wamid] = fut
        return fut


class KafkaObserver(TopicObserver):
    """Reads the message topic (no group) to learn each record's producer timestamp."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, [MESSAGE_TOPIC], fetch_max_wait_ms=10)
        self.produced_at: dict[str, float] = {}

    def seen(self, record: ConsumerRecord[bytes, bytes]) -> None:
        data = json.loads(record.value)["data"]
        if data.get("wamid"):
            self.produced_at[data["wamid"]] = record.timestamp / 1000


def signed(number: SimNumber, wa_id: str, text: str) -> tuple[bytes, str, dict[str, str]]:
    raw, wamid = payload(number.phone_number_id, wa_id, text)
    sig = "sha256=" + hmac.new(number.app_secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, wamid, {"Content-Type": "application/json", "X-Hub-Signature-256": sig}


def summary(label: str, latencies: list[float], lost: int) -> None:
    ms = [v * 1000 for v in latencies]
    if not ms:
        print(f"{label}: n 0, lost {lost}")
        return
    print(
        f"{label}: n {len(ms)}   p50 {pct(ms, 50):.0f} ms   p95 {pct(ms, 95):.0f} ms   "
        f"p99 {pct(ms, 99):.0f} ms   max {max(ms):.0f} ms   lost frames {lost}"
    )


async def connect(
    session: aiohttp.ClientSession, gateway: str, tenant: Tenant, name: str
) -> tuple[aiohttp.ClientWebSocketResponse, Socket, asyncio.Task[None]]:
    url = "ws" + gateway.removeprefix("http") + "/v1/stream"
    ws = await session.ws_connect(url, headers=tenant.headers, heartbeat=20)
    sock = Socket(name)
    return ws, sock, asyncio.create_task(sock.read(ws))


async def sequential(
    gw: httpx.AsyncClient,
    number: SimNumber,
    agent: Socket,
    n: int,
    gap: float,
    timeout: float,
) -> tuple[list[tuple[str, float, float]], int]:
    """(wamid, acked, arrived) per message sent one at a time; and how many never arrived."""
    done: list[tuple[str, float, float]] = []
    lost = 0
    for i in range(n):
        raw, wamid, headers = signed(number, f"1555{i % 20:07d}", f"seq {i}")
        r = await gw.post("/webhooks/whatsapp", content=raw, headers=headers)
        acked = time.time()
        r.raise_for_status()
        try:
            arrived = await asyncio.wait_for(agent.expect(wamid), timeout)
            done.append((wamid, acked, arrived))
        except TimeoutError:
            lost += 1
        await asyncio.sleep(random.uniform(gap / 2, gap * 1.5))
    return done, lost


async def loaded(
    gw: httpx.AsyncClient, number: SimNumber, n: int, rate: float, concurrency: int
) -> tuple[dict[str, float], float]:
    """Open-loop webhooks at ``rate``/s: when each was acknowledged, and the rate achieved."""
    acked: dict[str, float] = {}
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        raw, wamid, headers = signed(number, f"1555{i % 20:07d}", f"load {i}")
        async with sem:
            r = await gw.post("/webhooks/whatsapp", content=raw, headers=headers)
            acked[wamid] = time.time()
            r.raise_for_status()

    start = time.perf_counter()
    tasks = []
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return acked, n / (time.perf_counter() - start)


class CommitListener:
    """LISTENs on the conversations stream channel: when each event's transaction committed."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.heard: dict[int, float] = {}
        self.conn: asyncpg.Connection | None = None

    async def start(self) -> None:
        self.conn = await asyncpg.connect(self.dsn)
        await self.conn.add_listener(STREAM_CHANNEL, self._on_notify)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        now = time.time()
        with contextlib.suppress(ValueError):
            self.heard[int(payload.split(":", 2)[1])] = now

    async def stop(self) -> None:
        if self.conn is not None:
            await self.conn.close()


async def bench(
    stack: LocalStack, args: argparse.Namespace, procs: dict[str, psutil.Process]
) -> None:
    gateway = stack.url("api-gateway")
    loop = MainLoop(gateway, stack.url("meta-simulator"))
    tenant = await loop.register("Stream Bench Org")
    other = await loop.register("Other Org")
    number = await loop.connect_number(tenant)
    gw = httpx.AsyncClient(
        base_url=gateway, timeout=20.0, limits=httpx.Limits(max_connections=args.c)
    )
    observer = KafkaObserver(stack.cfg.kafka_bootstrap)
    dsn = asyncpg_dsn(to_asyncpg_url(stack.cfg.database_url, database="pytake_conversations"))
    commits = CommitListener(dsn)
    async with aiohttp.ClientSession() as session:
        ws_a, agent, reader_a = await connect(session, gateway, tenant, "agent")
        ws_b, stranger, reader_b = await connect(session, gateway, other, "other org")
        # the same agent straight to conversations (no gateway): splits the last hop
        ws_d, direct, reader_d = await connect(
            session, stack.url("conversations"), tenant, "direct"
        )
        await observer.start()
        await commits.start()
        # warm-up: the first message of each customer opens a conversation
        await sequential(gw, number, agent, args.warmup, 0.05, 30.0)
        agent.arrived.clear()
        stranger_before = stranger.frames

        seq, seq_lost = await sequential(gw, number, agent, args.n, args.gap, args.timeout)
        print(
            "webhook acknowledged → message.created frame on the agent's stream "
            "(through the gateway), target p95 < 200 ms"
        )
        summary(
            f"  sequential, gap ~{args.gap * 1000:.0f} ms",
            [arrived - acked for _, acked, arrived in seq],
            seq_lost,
        )
        if args.load_n:
            load_acked, achieved = await loaded(gw, number, args.load_n, args.rate, args.c)
            await asyncio.wait([agent.expect(w) for w in load_acked], timeout=args.timeout)
            got = {w: agent.arrived[w] - t for w, t in load_acked.items() if w in agent.arrived}
            summary(
                f"  loaded, {achieved:.1f} webhooks/s",
                list(got.values()),
                len(load_acked) - len(got),
            )
            relayed = [
                (observer.produced_at[w] - t) * 1000
                for w, t in load_acked.items()
                if w in observer.produced_at
            ]
            if relayed:
                print(
                    f"    of which ack → outbox relay produces: p50 {pct(relayed, 50):.1f} ms   "
                    f"p95 {pct(relayed, 95):.1f} ms   max {max(relayed):.1f} ms   "
                    f"over 500 ms: {sum(v > 500 for v in relayed)}"
                )
            if len(got) < len(load_acked):  # let the backlog drain before the idle window
                await asyncio.wait([agent.expect(w) for w in load_acked], timeout=args.drain)
        await asyncio.sleep(1.0)
        print(
            f"second organization's agent, connected all along: "
            f"{stranger.frames - stranger_before} frames received "
            f"({sum(w in stranger.arrived for w in agent.arrived)} of this run's messages)"
        )

        # where the sequential time goes
        steps: list[tuple[str, list[float]]] = [
            ("ack → outbox relay produces (Kafka timestamp)", []),
            ("produce → conversations transaction starts", []),
            ("transaction start → commit (NOTIFY heard)", []),
            ("commit → frame on a socket straight to conversations", []),
            ("straight socket → the same frame through the gateway", []),
        ]
        for wamid, acked, arrived in seq:
            produced = observer.produced_at.get(wamid)
            stored = agent.stored_at.get(wamid)
            committed = commits.heard.get(agent.frame_id.get(wamid, -1))
            straight = direct.arrived.get(wamid)
            if produced is None or stored is None or committed is None or straight is None:
                continue
            marks = [acked, produced, stored, committed, straight, arrived]
            for (_, values), a, b in zip(steps, marks, marks[1:], strict=False):
                values.append(b - a)
        if steps[0][1]:
            print(f"path of the sequential messages ({len(steps[0][1])} with every timestamp):")
            for label, values in steps:
                ms = [v * 1000 for v in values]
                print(
                    f"  {label:54} p50 {pct(ms, 50):6.1f} ms   p95 {pct(ms, 95):6.1f} ms   "
                    f"max {max(ms):6.1f} ms"
                )
        for ws in (ws_a, ws_b, ws_d):
            await ws.close()
        for task in (reader_a, reader_b, reader_d):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    await commits.stop()
    await observer.stop()
    await gw.aclose()
    await loop.aclose()
    if args.idle > 0:
        await idle_cpu(procs, args.idle)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=100, help="sequential webhooks")
    parser.add_argument(
        "--gap", type=float, default=0.2, help="mean pause between sequential webhooks, s"
    )
    parser.add_argument("--load-n", type=int, default=150, help="webhooks in the loaded run")
    parser.add_argument("--rate", type=float, default=5.0, help="loaded run: webhooks per second")
    parser.add_argument("--c", type=int, default=16, help="loaded run: most webhooks in flight")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="a frame later than this is lost"
    )
    parser.add_argument(
        "--warmup", type=int, default=20, help="webhooks before measuring (opens the conversations)"
    )
    parser.add_argument(
        "--drain", type=float, default=120.0, help="most to wait for a loaded backlog, s"
    )
    parser.add_argument("--idle", type=float, default=10.0, help="idle CPU window, s (0: skip)")
    args = parser.parse_args()
    with platform("stream") as running:
        asyncio.run(bench(running.stack, args, running.processes()))


if __name__ == "__main__":
    main()
