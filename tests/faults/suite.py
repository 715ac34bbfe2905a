"""Fault suite (``make faults``): the whole platform under steady load while its parts fail.

Starts every service as its own process on free loopback ports (embedded PostgreSQL and
Tansu, as ``make run`` does, through ``bench/_measure.py``), registers an organization and
a number, and keeps three clients running for the whole run:

- **Meta**: signed single-message webhooks through the gateway at ``--rate`` per second
  from ``--customers`` customers. A webhook not answered 200 is posted again with the same
  bytes (backing off to 5 s), as Meta retries; the simulator's status webhooks
  (sent/delivered/read) that failed are redelivered the same way.
- **An agent**: ``POST /v1/conversations/{id}/messages`` with an ``Idempotency-Key`` at
  ``--send-rate`` per second; a failed or unanswered request is retried with the same key.
- **A realtime client**: ``WebSocket /v1/stream`` through the gateway, reconnecting with
  ``?last_event_id=`` (the last frame it got) whenever the socket drops.

Then injects, one after the other: kill -9 of each PyTake service (started again
``--down`` seconds later), the broker paused for ``--pause`` seconds (SIGSTOP/SIGCONT on
Tansu), and PostgreSQL restarted. After each fault it measures the recovery time (fault
end until the first webhook posted after it is visible through the API, and on the
stream) and checks, for everything accepted so far:

- every acknowledged inbound message is in its customer's conversation exactly once;
- every accepted agent send reached the Graph API (the simulator's record) at most once
  and has a final status (``read`` or ``failed``);
- the stream resumed: a message posted after the fault arrived on it, and the client has
  every accepted message's ``message.created`` frame (checked at the end).

Prints a table, and exits 1 on any violation. The Meta simulator is not killed: it
stands for Meta. Loopback only; bounded by --deadline (default 12 minutes).
Usage: python tests/faults/suite.py [--faults all|kill:conversations,broker,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import os
import shutil
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _measure import Platform, platform

from pytake_common.pgtenant import asyncpg_dsn, to_asyncpg_url
from pytake_devstack.mainloop import MainLoop, SimNumber, Tenant, text_webhook

SERVICES = ("api-gateway", "auth", "tenants", "contacts", "conversations", "whatsapp-gateway")
PASSWORD = "correct horse battery staple"  # MainLoop.register's
FINAL = ("read", "failed")


def now() -> float:
    return time.monotonic()


@dataclass
class Inbound:
    wa_id: str
    raw: bytes
    posted_at: float
    acked_at: float | None = None
    refusals: int = 0  # answers other than 200 and failed requests (each retried)


@dataclass
class Send:
    conversation_id: str
    key: str
    text: str
    requested_at: float
    accepted_at: float | None = None
    message_id: str | None = None
    refused: str | None = None  # a definitive 4xx (not retried)
    retries: int = 0


@dataclass
class FaultResult:
    name: str
    down_s: float
    ready_s: float | None = None
    visible_s: float | None = None
    stream_s: float | None = None
    webhook_retries: int = 0
    send_retries: int = 0
    reconnects: int = 0
    checked: str = ""
    violations: list[str] = field(default_factory=list)


class Stream:
    """A realtime client that reconnects with ``last_event_id`` like a real one."""

    def __init__(self, gateway: str, token: Callable[[], str]) -> None:
        self.url = "ws" + gateway.removeprefix("http") + "/v1/stream"
        self.token = token
        self.seen: dict[str, float] = {}  # wamid -> when its message.created frame came
        self.duplicates = 0
        self.last_id: int | None = None
        self.connects = 0
        self.stopping = False

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while not self.stopping:
                query = f"?last_event_id={self.last_id}" if self.last_id is not None else ""
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.ws_connect(
                        self.url + query,
                        headers={"Authorization": f"Bearer {self.token()}"},
                        heartbeat=5,
                    ) as ws:
                        self.connects += 1
                        async for msg in ws:
                            if msg.type == aiohttp.WSMsgType.TEXT:
                                self.frame(json.loads(msg.data))
                await asyncio.sleep(0.5)

    def frame(self, frame: dict[str, Any]) -> None:
        if "id" not in frame:
            return
        self.last_id = int(frame["id"])
        if frame.get("type") != "message.created":
            return
        wamid = frame["data"]["message"].get("wamid")
        if wamid and frame["data"]["message"].get("direction") == "inbound":
            if wamid in self.seen:
                self.duplicates += 1
            else:
                self.seen[wamid] = now()


class Suite:
    def __init__(self, running: Platform, args: argparse.Namespace) -> None:
        self.running = running
        self.stack = running.stack
        self.args = args
        self.gateway = self.stack.url("api-gateway")
        self.loop = MainLoop(self.gateway, self.stack.url("meta-simulator"))
        self.hooks = httpx.AsyncClient(base_url=self.gateway, timeout=10.0)
        self.api = httpx.AsyncClient(base_url=self.gateway, timeout=10.0)
        self.sim = httpx.AsyncClient(base_url=self.stack.url("meta-simulator"), timeout=30.0)
        self.tenant: Tenant
        self.number: SimNumber
        self.customers = [f"1555{7000000 + i}" for i in range(args.customers)]
        self.probe = "15559990001"
        self.conversations: dict[str, str] = {}  # wa_id -> conversation id
        self.inbound: dict[str, Inbound] = {}
        self.sends: dict[str, Send] = {}
        self.stream: Stream
        self.stopping = False
        self.ready: asyncio.Task[float | None] | None = None
        self.load: list[asyncio.Task[None]] = []
        self.tasks: set[asyncio.Future[Any]] = set()
        self.deliveries: set[asyncio.Future[Any]] = set()
        self.redelivered: set[int] = set()
        self.meta_retries = 0
        self.dsn = asyncpg_dsn(
            to_asyncpg_url(self.stack.cfg.database_url, database="pytake_conversations")
        )

    # ---- clients -------------------------------------------------------------------

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def headers(self) -> dict[str, str]:
        return self.tenant.headers

    async def relogin(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            r = await self.api.post(
                "/v1/auth/login", json={"email": self.tenant.email, "password": PASSWORD}
            )
            if r.status_code == 200:
                self.tenant.access_token = r.json()["access_token"]

    async def get(self, path: str, **params: Any) -> httpx.Response | None:
        """A read through the gateway; None when it failed (the caller tries again)."""
        try:
            r = await self.api.get(path, headers=self.headers(), params=params)
        except httpx.HTTPError:
            return None
        if r.status_code == 401:
            await self.relogin()
        return r if r.status_code == 200 else None

    def post_webhook(self, wa_id: str, text: str) -> str:
        raw, wamid = text_webhook(self.number.phone_number_id, wa_id, text, tag="FAULT")
        self.inbound[wamid] = Inbound(wa_id, raw, now())
        task = self.spawn(self.deliver(wamid))
        self.deliveries.add(task)
        task.add_done_callback(self.deliveries.discard)
        return wamid

    async def deliver(self, wamid: str) -> None:
        """Post one webhook until it is answered 200, as Meta does."""
        item = self.inbound[wamid]
        sig = hmac.new(self.number.app_secret.encode(), item.raw, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + sig}
        backoff = 0.5
        while not self.stopping:
            with contextlib.suppress(httpx.HTTPError):
                r = await self.hooks.post("/webhooks/whatsapp", content=item.raw, headers=headers)
                if r.status_code == 200:
                    item.acked_at = now()
                    return
            item.refusals += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def send(self, item: Send) -> None:
        """One agent send, retried with the same Idempotency-Key until it is answered."""
        headers = {**self.headers(), "Idempotency-Key": item.key}
        body = {"type": "text", "text": {"body": item.text}}
        path = f"/v1/conversations/{item.conversation_id}/messages"
        backoff = 0.5
        while not self.stopping:
            try:
                r = await self.api.post(path, json=body, headers=headers)
            except httpx.HTTPError:
                r = None
            if r is not None and r.status_code == 202:
                item.accepted_at = now()
                item.message_id = r.json()["id"]
                return
            if r is not None and r.status_code == 401:
                await self.relogin()
                headers = {**self.headers(), "Idempotency-Key": item.key}
            elif r is not None and 400 <= r.status_code < 500 and r.status_code != 429:
                item.refused = f"{r.status_code} {r.text[:200]}"
                return
            item.retries += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    # ---- steady load -----------------------------------------------------------------

    async def inbound_load(self) -> None:
        i = 0
        while not self.stopping:
            self.post_webhook(self.customers[i % len(self.customers)], f"inbound {i}")
            i += 1
            await asyncio.sleep(1 / self.args.rate)

    async def send_load(self) -> None:
        n = 0
        targets = [self.conversations[c] for c in self.customers]
        while not self.stopping and n < self.args.max_sends:
            key = uuid.uuid4().hex
            item = Send(targets[n % len(targets)], key, f"agent {n} {key[:8]}", now())
            self.sends[key] = item
            self.spawn(self.send(item))
            n += 1
            await asyncio.sleep(1 / self.args.send_rate)

    async def meta_retries_loop(self) -> None:
        """Redeliver the simulator's status webhooks that were not answered 200 (Meta retries)."""
        while not self.stopping:
            await asyncio.sleep(2.0)
            await self.redeliver_failed()

    async def redeliver_failed(self) -> None:
        try:
            deliveries = (await self.sim.get("/_sim/webhooks")).json()
        except (httpx.HTTPError, ValueError):
            return
        for d in deliveries:
            if d["status_code"] == 200 or d["seq"] in self.redelivered:
                continue
            with contextlib.suppress(httpx.HTTPError):
                r = await self.sim.post(f"/_sim/webhooks/{d['seq']}/redeliver")
                if r.status_code == 200:
                    self.redelivered.add(d["seq"])
                    self.meta_retries += 1

    # ---- setup -----------------------------------------------------------------------

    async def setup(self) -> None:
        self.tenant = await self.loop.register("Fault Suite Org")
        self.number = await self.loop.connect_number(self.tenant)
        self.stream = Stream(self.gateway, lambda: self.tenant.access_token)
        self.spawn(self.stream.run())
        for wa_id in [*self.customers, self.probe]:
            self.post_webhook(wa_id, "hello")
        deadline = now() + 60
        while not {*self.customers, self.probe} <= set(self.conversations):
            r = await self.get("/v1/conversations", limit=100)
            for c in r.json()["items"] if r is not None else []:
                self.conversations[c["wa_id"]] = c["id"]
            if now() > deadline:
                raise TimeoutError("the first conversations did not appear in 60 s")
            await asyncio.sleep(0.3)

    # ---- measuring -------------------------------------------------------------------

    async def recovery(self, end: float) -> tuple[float | None, float | None]:
        """Seconds from ``end`` until a webhook posted after it was visible through the API,
        and until one arrived on the stream (None: not within --recovery-timeout)."""
        probe_conv = self.conversations[self.probe]
        probes: set[str] = set()
        visible = streamed = None
        last_probe = 0.0
        while now() - end < self.args.recovery_timeout:
            if streamed is None:
                arrivals = [
                    self.stream.seen[w]
                    for w, item in self.inbound.items()
                    if item.posted_at >= end and w in self.stream.seen
                ]
                if arrivals:
                    streamed = min(arrivals) - end
            if visible is None:
                if now() - last_probe > 0.5:
                    probes.add(self.post_webhook(self.probe, "probe"))
                    last_probe = now()
                r = await self.get(
                    f"/v1/conversations/{probe_conv}/messages", latest="true", limit=20
                )
                if r is not None and probes & {m.get("wamid") for m in r.json()["items"]}:
                    visible = now() - end
            if visible is not None and streamed is not None:
                break
            await asyncio.sleep(0.2)
        return visible, streamed

    async def check(self, result: FaultResult | None, *, timeout: float) -> list[str]:
        """Wait (up to ``timeout``) until everything accepted so far is where it belongs;
        return what is not."""
        cutoff = now()
        acked = {w: i for w, i in self.inbound.items() if i.acked_at and i.acked_at <= cutoff}
        sends = {
            s.message_id: s
            for s in self.sends.values()
            if s.message_id and s.accepted_at and s.accepted_at <= cutoff
        }
        deadline = now() + timeout
        while True:
            problems = await self.problems(acked, sends)
            if not problems or now() > deadline:
                break
            await asyncio.sleep(1.0)
        if result is not None:
            result.checked = f"{len(acked)} in, {len(sends)} out"
        return problems

    async def problems(self, acked: dict[str, Inbound], sends: dict[str, Send]) -> list[str]:
        try:
            conn = await asyncpg.connect(self.dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            return [f"conversations' database unreachable: {exc!r}"]
        try:
            rows = await conn.fetch(
                "SELECT m.wamid, c.wa_id FROM messages m "
                "JOIN conversations c ON c.id = m.conversation_id "
                "WHERE m.direction = 'inbound' AND m.wamid = ANY($1::text[])",
                list(acked),
            )
            statuses = {
                str(r["id"]): r["status"]
                for r in await conn.fetch(
                    "SELECT id, status FROM messages WHERE id = ANY($1::uuid[])",
                    [uuid.UUID(k) for k in sends],
                )
            }
        finally:
            await conn.close()
        stored = Counter(r["wamid"] for r in rows)
        where = {r["wamid"]: r["wa_id"] for r in rows}
        problems: list[str] = []
        lost = [w for w in acked if stored[w] == 0]
        twice = [w for w in acked if stored[w] > 1]
        astray = [w for w in acked if stored[w] and where[w] != acked[w].wa_id]
        for label, items in (
            ("acknowledged inbound messages lost", lost),
            ("inbound messages stored more than once", twice),
            ("inbound messages in another customer's conversation", astray),
        ):
            if items:
                problems.append(f"{len(items)} {label}: {', '.join(items[:5])}")
        try:
            calls = Counter(
                c["body"].get("text", {}).get("body")
                for c in (await self.sim.get("/_sim/sent")).json()
            )
        except (httpx.HTTPError, ValueError) as exc:
            return [*problems, f"simulator unreachable: {exc!r}"]
        twice_sent = [m for m, s in sends.items() if calls[s.text] > 1]
        not_final = [f"{m} ({statuses.get(m)})" for m in sends if statuses.get(m) not in FINAL]
        read_unsent = [
            m for m, s in sends.items() if statuses.get(m) == "read" and not calls[s.text]
        ]
        for label, items in (
            ("agent sends reached the Graph API more than once", twice_sent),
            ("agent sends without a final status", not_final),
            ("agent sends read but never sent to the Graph API", read_unsent),
        ):
            if items:
                problems.append(f"{len(items)} {label}: {', '.join(items[:5])}")
        return problems

    # ---- faults ----------------------------------------------------------------------

    async def kill(self, service: str) -> float:
        self.stack.kill(service)
        await asyncio.sleep(self.args.down)
        self.stack.spawn(service)
        self.ready = asyncio.create_task(self.until_ready(self.stack.url(service), now()))
        return float(self.args.down)

    async def until_ready(self, url: str, since: float) -> float | None:
        """Seconds until ``url`` answers ``/readyz`` 200 (None: not within the recovery timeout)."""
        async with httpx.AsyncClient(base_url=url, timeout=2.0) as client:
            while now() - since < self.args.recovery_timeout:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/readyz")).status_code == 200:
                        return now() - since
                await asyncio.sleep(0.1)
        return None

    async def pause_broker(self) -> float:
        broker = self.running.infra.broker
        assert broker is not None and broker.proc is not None
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(self.args.pause)
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        return float(self.args.pause)

    async def restart_postgres(self) -> float:
        pg = self.running.infra.pg
        assert pg is not None
        started = now()
        await asyncio.to_thread(pg.restart)
        return now() - started

    def faults(self) -> list[tuple[str, Callable[[], Awaitable[float]]]]:
        every: list[tuple[str, Callable[[], Awaitable[float]]]] = [
            (f"kill:{s}", functools.partial(self.kill, s)) for s in SERVICES
        ]
        every += [("broker", self.pause_broker), ("postgres", self.restart_postgres)]
        if self.args.faults == "all":
            return every
        wanted = self.args.faults.split(",")
        unknown = set(wanted) - {name for name, _ in every}
        if unknown:
            raise SystemExit(f"unknown faults {sorted(unknown)}; known: {[n for n, _ in every]}")
        return [f for f in every if f[0] in wanted]

    @staticmethod
    def label(name: str) -> str:
        if name.startswith("kill:"):
            return f"kill -9 {name[5:]}"
        return {"broker": "broker paused", "postgres": "PostgreSQL restarted"}[name]

    async def run(self) -> list[FaultResult]:
        started = now()
        await self.setup()
        self.load = [
            asyncio.create_task(self.inbound_load()),
            asyncio.create_task(self.send_load()),
        ]
        self.spawn(self.meta_retries_loop())
        await asyncio.sleep(self.args.warmup)
        results: list[FaultResult] = []
        baseline = FaultResult("none (baseline)", 0.0)
        baseline.visible_s, baseline.stream_s = await self.recovery(now())
        baseline.violations = await self.check(baseline, timeout=self.args.settle)
        results.append(baseline)
        for name, inject in self.faults():
            if now() - started > self.args.deadline:
                raise TimeoutError(f"the run passed its deadline of {self.args.deadline:.0f} s")
            hooks_before = sum(i.refusals for i in self.inbound.values())
            sends_before = sum(s.retries for s in self.sends.values())
            connects_before = self.stream.connects
            self.ready = None
            down = await inject()
            result = FaultResult(self.label(name), down)
            result.visible_s, result.stream_s = await self.recovery(now())
            if self.ready is not None:
                result.ready_s = await self.ready
            if result.visible_s is None or result.stream_s is None:
                result.violations.append(
                    f"not recovered within {self.args.recovery_timeout:.0f} s "
                    f"(API: {result.visible_s}, stream: {result.stream_s})"
                )
            result.violations += await self.check(result, timeout=self.args.settle)
            result.webhook_retries = sum(i.refusals for i in self.inbound.values()) - hooks_before
            result.send_retries = sum(s.retries for s in self.sends.values()) - sends_before
            result.reconnects = self.stream.connects - connects_before
            results.append(result)
            print(f"  {result.name}: {result.violations or 'ok'}", flush=True)
            await asyncio.sleep(self.args.gap)
        results.append(await self.finish())
        return results

    async def finish(self) -> FaultResult:
        """Stop the load, let every retry land, and check the whole run."""
        self.stopping_load()
        if self.deliveries:  # webhooks still being retried
            await asyncio.wait(self.deliveries, timeout=self.args.settle)
        final = FaultResult("end of run (all traffic)", 0.0)
        final.violations = await self.check(final, timeout=self.args.settle)
        pending = [w for w, i in self.inbound.items() if i.acked_at is None]
        if pending:
            final.violations.append(f"{len(pending)} webhooks never acknowledged: {pending[:5]}")
        unanswered = [s.key for s in self.sends.values() if not s.message_id and not s.refused]
        if unanswered:
            final.violations.append(f"{len(unanswered)} agent sends never answered")
        # A frame may still be on its way (the check above waited for rows, not frames):
        # wait for the stream as long as for the rows, then count what never came.
        deadline = asyncio.get_running_loop().time() + self.args.settle
        while True:
            missed = [
                w for w, i in self.inbound.items() if i.acked_at and w not in self.stream.seen
            ]
            if not missed or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.5)
        if missed:
            final.violations.append(
                f"{len(missed)} accepted messages never arrived on the stream: {missed[:5]}"
            )
        if self.stream.duplicates:
            final.violations.append(f"{self.stream.duplicates} duplicated stream frames")
        return final

    def stopping_load(self) -> None:
        for task in self.load:
            task.cancel()

    async def close(self) -> None:
        self.stopping = True
        self.stream.stopping = True
        for task in [*self.load, *self.tasks]:
            task.cancel()
        await asyncio.gather(*self.load, *self.tasks, return_exceptions=True)
        for client in (self.hooks, self.api, self.sim):
            await client.aclose()
        await self.loop.aclose()


def fmt(value: float | None) -> str:
    return f"{value:6.1f} s" if value is not None else "   none "


def report(suite: Suite, results: list[FaultResult], elapsed: float) -> int:
    args = suite.args
    print(
        f"\nfault suite: {args.rate:g} webhooks/s from {args.customers} customers, "
        f"{args.send_rate:g} agent sends/s, services killed -9 and started {args.down:g} s "
        f"later, broker paused {args.pause:g} s; {elapsed:.0f} s in all"
    )
    print(f"  load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(
        f"  {'fault':26} {'down':>8} {'ready':>9} {'visible':>9} {'stream':>9} "
        f"{'webhooks':>9} {'sends':>6} {'ws':>3}  checked          result"
    )
    print(f"  {'':26} {'':>8} {'':>9} {'(API)':>9} {'':>9} {'retried':>9} {'retr.':>6} {'':>3}")
    for r in results:
        verdict = "ok" if not r.violations else "VIOLATION"
        print(
            f"  {r.name:26} {fmt(r.down_s)} {fmt(r.ready_s):>9} {fmt(r.visible_s):>9} "
            f"{fmt(r.stream_s):>9} "
            f"{r.webhook_retries:>9} {r.send_retries:>6} {r.reconnects:>3}  "
            f"{r.checked:16} {verdict}"
        )
    inbound = [i for i in suite.inbound.values() if i.acked_at]
    sends = [s for s in suite.sends.values() if s.message_id]
    refused = [s for s in suite.sends.values() if s.refused]
    print(
        f"  inbound: {len(inbound)} acknowledged ({sum(i.refusals for i in suite.inbound.values())}"
        f" refusals retried); agent sends: {len(sends)} accepted, {len(refused)} refused; "
        f"status webhooks redelivered: {suite.meta_retries}; stream connections: "
        f"{suite.stream.connects}"
    )
    violations = [(r.name, v) for r in results for v in r.violations]
    for name, v in violations:
        print(f"  VIOLATION after {name}: {v}")
    for s in refused[:5]:
        print(f"  refused send {s.key}: {s.refused}")
    return 1 if violations else 0


async def main_async(running: Platform, args: argparse.Namespace) -> int:
    suite = Suite(running, args)
    started = now()
    try:
        results = await suite.run()
    finally:
        await suite.close()
    return report(suite, results, now() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faults", default="all", help="all, or e.g. kill:conversations,broker")
    parser.add_argument("--rate", type=float, default=4.0, help="webhooks per second")
    parser.add_argument("--send-rate", type=float, default=0.5, help="agent sends per second")
    parser.add_argument("--max-sends", type=int, default=230, help="the free plan allows 250")
    parser.add_argument("--customers", type=int, default=8)
    parser.add_argument(
        "--down", type=float, default=5.0, help="seconds a killed service stays down"
    )
    parser.add_argument("--pause", type=float, default=30.0, help="seconds the broker is paused")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between faults")
    parser.add_argument(
        "--settle",
        type=float,
        default=150.0,
        help="max wait for each check; above whatsapp-gateway's PYTAKE_SEND_CONFIRM_WINDOW_S "
        "(120 s): a send whose Graph call went unanswered waits that long for a status "
        "webhook before it is sent again",
    )
    parser.add_argument("--recovery-timeout", type=float, default=180.0)
    parser.add_argument("--deadline", type=float, default=720.0, help="give up after (s)")
    parser.add_argument("--logs", type=Path, help="copy the services' logs here at the end")
    parser.add_argument("--log-level", default="WARNING", help="the services' PYTAKE_LOG_LEVEL")
    args = parser.parse_args()
    # `timeout` or a CI runner stops us with SIGTERM: unwind, so that the platform's
    # processes, PostgreSQL and the broker are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with platform("faults", {"PYTAKE_LOG_LEVEL": args.log_level}, ready_timeout=300) as running:
        if running.infra.pg is None or running.infra.broker is None:
            sys.exit(
                "the fault suite restarts the embedded PostgreSQL and pauses Tansu: "
                "unset PYTAKE_DATABASE_URL and PYTAKE_KAFKA_BOOTSTRAP"
            )
        try:
            code = asyncio.run(main_async(running, args))
        finally:
            if args.logs is not None:
                shutil.copytree(running.stack.logs, args.logs, dirs_exist_ok=True)
        if code:
            print(running.stack.log_tail(15), file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
