"""Benchmark (issue #16's send targets): a campaign draining at the number's limit, with
the whole platform running, agent replies on the same number, and a SIGKILL of campaigns.

Starts every service as a process (embedded PostgreSQL and Tansu unless
``PYTAKE_DATABASE_URL`` / ``PYTAKE_KAFKA_BOOTSTRAP`` name real ones) and, through the
public API only: registers an organization (moved to the enterprise plan by a super admin
made with ``python -m pytake_auth create-super-admin``), connects a simulated number
(throughput 80/s), approves a UTILITY template in the simulator, imports ``--n`` contacts
(CSV), and has ``--agents`` customers write in (open conversations on the same number).
The agent replies (one a second) go round them: with 8, each customer gets one every 8 s,
below Meta's pair rate (about one in 6 s after a burst of 10), which the gateway keeps;
with 4, a run longer than about two minutes measured that rate's queue, not the gateway.

1. Baseline: an agent replies once a second (``--baseline`` replies) with nothing else
   sending; the time from ``POST /v1/conversations/{id}/messages`` to the simulator
   recording the Graph API call (its own clock, same box).
2. A campaign to the imported contacts (its audience: their phone prefix) starts; the agents
   keep replying once a second, round-robin, until it completes. ``--kill-after S`` SIGKILLs
   the campaigns service (``--kill-service whatsapp-gateway``: that one) S seconds after the
   start and starts it again on its port (0: no kill); the report then says when the
   restarted process was ready, when each of its consumer groups handled a record again,
   campaigns' first release, and the stall (the longest gap between campaign sends).
3. From the simulator's record of every accepted Graph API send (``GET /_sim/sent``, each
   with its acceptance time): the number's rate from the campaign's first send to its last
   (campaign and agents: the sends its limit counts), the campaign's own (and before the
   kill / after the restart), the most sends on the number in any sliding second and in any
   calendar second (campaign and agents together: the limit is the number's), the agent
   replies' latency (p50/p95/max), and template sends per imported contact (duplicates:
   more than one; skipped: none), beside the campaign's own stats. The same windows by
   whatsapp-gateway's record of when each call left (``send_log.departed_at``), and each
   call's way from there to the simulator's stamp: where our side ends, and what the
   receiver's clock added.

The simulator runs ahead of the platform (``--simulator-nice``, -10 by default, as root):
it stands for Meta's edge, which does not share our cores, and stamps each call's arrival
on its event loop, late by as long as the box's load keeps that loop waiting.

Targets: 76-80 per second on the number, never more than 80 in any sliding second, agent
replies under 1 s at p95, 0 duplicates and 0 skipped across the kill. Prints the box's calibration
(bench/_measure.calibrate), the load average before and after, and each process's CPU
over the drain (where the time goes). The box is shared: run it more than once.

Usage: python bench/campaign_send.py [--n 3000] [--agents 8] [--kill-after 15]
       [--kill-service campaigns|whatsapp-gateway] [--baseline 10] [--ready-timeout 180]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import math
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))

from _measure import (
    Platform,
    box,
    cpu,
    pct,
    platform,
    postgres_cpu,
    print_slow_plans,
    reniced,
)
from cpu_per_message import print_statements, reset_statements, statements_option

from pytake_common.pgtenant import asyncpg_dsn, to_asyncpg_url
from pytake_devstack.mainloop import MainLoop, Tenant, poll
from pytake_devstack.stack import wait_ready

LIMIT = 80  # the number's throughput (whatsapp-gateway's default, Meta's standard); --throughput
PREFIX = "1415777"  # the imported contacts' phones: +1415777NNNN


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def super_admin(plat: Platform, loop: MainLoop) -> dict[str, str]:
    email, password = f"root{secrets.token_hex(3)}@example.com", secrets.token_urlsafe(18)
    env = {
        **os.environ,
        **plat.stack.cfg.common_env(),
        "PYTAKE_BOOTSTRAP_PASSWORD": password,
    }
    argv = [sys.executable, "-m", "pytake_auth", "create-super-admin", "--email", email]
    await asyncio.to_thread(
        subprocess.run, [*argv, "--full-name", "Bench Operator"], env=env, check=True
    )
    r = await loop.call("POST", "/v1/auth/login", json={"email": email, "password": password})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def prepare(plat: Platform, loop: MainLoop, n: int) -> tuple[Tenant, Any, str]:
    """An enterprise organization, its number, an approved UTILITY template, n contacts."""
    tenant = await loop.register("Campaign Bench")
    root = await super_admin(plat, loop)
    r = await loop.call(
        "PUT",
        f"/v1/organizations/{tenant.organization_id}/plan",
        json={"plan": "enterprise"},
        headers=root,
    )
    r.raise_for_status()
    number = await loop.connect_number(tenant)
    if LIMIT != 80:
        r = await loop.call(
            "PATCH",
            f"/v1/whatsapp/numbers/{number.id}",
            json={"throughput_per_second": LIMIT},
            headers=tenant.headers,
        )
        r.raise_for_status()
    r = await loop.call("GET", f"/v1/whatsapp/numbers/{number.id}", headers=tenant.headers)
    r.raise_for_status()
    assert r.json()["throughput_per_second"] == LIMIT, r.json()
    waba_id = r.json()["waba_id"]
    template = {
        "name": "order_update",
        "language": "en_US",
        "category": "UTILITY",
        "components": [{"type": "BODY", "text": "Hi {{1}}, your order has shipped."}],
    }
    r = await loop.call(
        "POST",
        f"/v1/whatsapp/numbers/{number.id}/templates",
        json=template,
        headers=tenant.headers,
    )
    r.raise_for_status()
    r = await loop.sim.post(
        f"/_sim/templates/{waba_id}/order_update/status", json={"status": "APPROVED"}
    )
    r.raise_for_status()
    csv = "phone,name\n" + "".join(f"+{PREFIX}{i:04d},Customer {i}\n" for i in range(n))

    async def imported() -> dict[str, Any] | None:
        # the enterprise plan reaches contacts through an event: the free plan's 500
        # contacts refuse the rows until then (an import is idempotent by phone)
        resp = await loop.call(
            "POST",
            "/v1/contacts/import",
            content=csv.encode(),
            headers={**tenant.headers, "Content-Type": "text/csv"},
            timeout=300,
        )
        resp.raise_for_status()
        result = dict(resp.json())
        return result if not result["failed"] else None

    started = time.perf_counter()
    result = await poll(imported, "the contacts import", timeout=120, interval=1.0)
    print(
        f"imported {n} contacts in {time.perf_counter() - started:.1f} s"
        f" (created {result['created']}, updated {result['updated']})"
    )
    return tenant, number, waba_id


async def agent_conversations(loop: MainLoop, tenant: Tenant, number: Any, k: int) -> list[str]:
    convs = []
    for i in range(k):
        wamid = await loop.customer_says(number, f"1555888{i:04d}", f"hello, I am customer {i}")
        convs.append(str((await loop.conversation_with_message(tenant, wamid))["id"]))
    return convs


class Agents:
    """Agent replies at a steady rate, round-robin over conversations; each reply's
    POST time (wall clock) by its text, matched later at the simulator."""

    def __init__(self, loop: MainLoop, tenant: Tenant, convs: list[str]) -> None:
        self.loop, self.tenant, self.convs = loop, tenant, convs
        self.posted: dict[str, float] = {}
        self.refused: list[str] = []

    async def reply(self, label: str, i: int) -> None:
        body = f"agent reply {label} {i} {uuid.uuid4().hex[:8]}"
        t0 = time.time()
        r = await self.loop.reply(self.tenant, self.convs[i % len(self.convs)], body)
        if r.status_code not in (201, 202):
            self.refused.append(f"{r.status_code} {r.text[:200]}")
            return
        self.posted[body] = t0

    async def steady(self, label: str, stop: asyncio.Event, every: float = 1.0) -> None:
        i = 0
        pending: set[asyncio.Task[None]] = set()
        next_at = time.monotonic()
        while not stop.is_set():
            task = asyncio.create_task(self.reply(label, i))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
            next_at += every
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*pending)

    def latencies(self, sent: list[dict[str, Any]], label: str) -> tuple[list[float], int]:
        at = {
            s["body"]["text"]["body"]: stamp(s)
            for s in sent
            if s["type"] == "text" and f" {label} " in s["body"]["text"]["body"]
        }
        mine = {body: t0 for body, t0 in self.posted.items() if f" {label} " in body}
        missing = [b for b in mine if b not in at]
        return [1000 * (at[b] - t0) for b, t0 in mine.items() if b in at], len(missing)


async def backlog(pg_url: str) -> str:
    """Where sends wait: whatsapp-gateway's send queue by priority (0 interactive, 2
    campaign) and the events not yet relayed from conversations' and campaigns' outboxes."""
    out = []
    for db, sql in (
        ("pytake_whatsapp_gateway", "SELECT priority, count(*) FROM send_queue GROUP BY 1"),
        ("pytake_conversations", "SELECT 'outbox', count(*) FROM outbox"),
        ("pytake_campaigns", "SELECT 'outbox', count(*) FROM outbox"),
    ):
        conn = await asyncpg.connect(asyncpg_dsn(to_asyncpg_url(pg_url, database=db)))
        try:
            rows = await conn.fetch(sql)
        finally:
            await conn.close()
        out.append(f"{db.removeprefix('pytake_')} " + str({r[0]: r[1] for r in rows}))
    return "; ".join(out)


class DatabaseSplit:
    """PostgreSQL's work by database: transactions (``pg_stat_database``: committed and
    rolled back) and the CPU of the backends connected to each database (by pid, from
    ``pg_stat_activity``; a backend that exits in between is counted, not its CPU; one
    that starts in between with all its CPU)."""

    def __init__(self, pg_url: str) -> None:
        self.pg_url = pg_url

    async def snapshot(self) -> tuple[dict[str, tuple[int, int]], dict[int, tuple[str, float]]]:
        conn = await asyncpg.connect(asyncpg_dsn(self.pg_url, database="postgres"))
        try:
            xacts = await conn.fetch(
                "SELECT datname, xact_commit, xact_rollback FROM pg_stat_database"
                " WHERE datname LIKE 'pytake%'"
            )
            backends = await conn.fetch(
                "SELECT pid, datname FROM pg_stat_activity"
                " WHERE datname LIKE 'pytake%' AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()
        cpus: dict[int, tuple[str, float]] = {}
        for b in backends:
            with contextlib.suppress(psutil.Error):
                cpus[b["pid"]] = (b["datname"], cpu(psutil.Process(b["pid"])))
        return {r["datname"]: (r["xact_commit"], r["xact_rollback"]) for r in xacts}, cpus

    @staticmethod
    def print(
        before: tuple[dict[str, tuple[int, int]], dict[int, tuple[str, float]]],
        after: tuple[dict[str, tuple[int, int]], dict[int, tuple[str, float]]],
        sends: int,
    ) -> None:
        used: dict[str, float] = dict.fromkeys(after[0], 0.0)
        exited = 0
        for pid, (db, was) in before[1].items():
            if pid in after[1]:
                used[db] = used.get(db, 0.0) + after[1][pid][1] - was
            else:
                exited += 1
        for pid, (db, now) in after[1].items():
            if pid not in before[1]:
                used[db] = used.get(db, 0.0) + now
        commits = {db: after[0][db][0] - before[0].get(db, (0, 0))[0] for db in after[0]}
        rollbacks = {db: after[0][db][1] - before[0].get(db, (0, 0))[1] for db in after[0]}
        print(
            "PostgreSQL per send by database (transactions committed + rolled back;"
            " CPU of its backends, not net of idle):"
        )
        for db in sorted(after[0], key=lambda d: -used[d]):
            print(
                f"  {db.removeprefix('pytake_'):20} {commits[db] / sends:6.2f}"
                f" + {rollbacks[db] / sends:4.2f} xacts {1000 * used[db] / sends:6.2f} ms"
            )
        print(
            f"  {'all':20} {sum(commits.values()) / sends:6.2f}"
            f" + {sum(rollbacks.values()) / sends:4.2f} xacts"
            f" {1000 * sum(used.values()) / sends:6.2f} ms ({exited} backends exited meanwhile)"
        )


class InFlight:
    """Samples, every ``every`` seconds while the campaign drains, what campaigns' dispatcher
    sees: its recipients in flight (dispatched or accepted, not yet sent/failed) against
    its window (``ceil(LIMIT * window_s)``), and whatsapp-gateway's queue of campaign sends
    (priority 2). A window full on most samples: the window binds the rate, not the CPU."""

    def __init__(self, pg_url: str, campaign: str, window_s: float, every: float = 0.25) -> None:
        self.pg_url, self.campaign, self.every = pg_url, uuid.UUID(campaign), every
        self.window = math.ceil(LIMIT * window_s)
        self.samples: list[tuple[float, int, int]] = []  # (time, in flight, gateway queue)

    async def run(self, stop: asyncio.Event) -> None:
        camp = await asyncpg.connect(
            asyncpg_dsn(to_asyncpg_url(self.pg_url, database="pytake_campaigns"))
        )
        gw = await asyncpg.connect(
            asyncpg_dsn(to_asyncpg_url(self.pg_url, database="pytake_whatsapp_gateway"))
        )
        try:
            while not stop.is_set():
                flying = await camp.fetchval(
                    "SELECT count(*) FROM campaign_recipients WHERE campaign_id = $1"
                    " AND status IN ('dispatched', 'accepted')",
                    self.campaign,
                )
                queue = await gw.fetchval("SELECT count(*) FROM send_queue WHERE priority = 2")
                self.samples.append((time.time(), int(flying), int(queue)))
                await asyncio.sleep(self.every)
        finally:
            await camp.close()
            await gw.close()

    async def latency(self) -> list[float]:
        """Release -> sent per recipient (ms): ``sent_at`` (the status event's time) minus
        ``dispatched_at``, from campaigns' database."""
        conn = await asyncpg.connect(
            asyncpg_dsn(to_asyncpg_url(self.pg_url, database="pytake_campaigns"))
        )
        try:
            rows = await conn.fetch(
                "SELECT extract(epoch FROM sent_at - dispatched_at) AS l FROM campaign_recipients"
                " WHERE campaign_id = $1 AND sent_at IS NOT NULL AND dispatched_at IS NOT NULL",
                self.campaign,
            )
        finally:
            await conn.close()
        return sorted(1000 * float(r["l"]) for r in rows)

    def print(
        self, latency: list[float], campaign_times: list[float], skip: tuple[float, float]
    ) -> None:
        """Skips the samples inside ``skip`` (a pause or a kill, from/to)."""
        if not campaign_times:
            return
        first, last = campaign_times[0], campaign_times[-1]
        inside = [
            s
            for s in self.samples
            if first + 1 <= s[0] <= last - 1 and not skip[0] <= s[0] <= skip[1]
        ]
        if latency:
            print(
                f"release -> sent (campaigns' sent_at - dispatched_at): n={len(latency)}"
                f" p50 {pct(latency, 50):.0f} ms, p95 {pct(latency, 95):.0f} ms,"
                f" max {latency[-1]:.0f} ms (on a loaded box: latency, not CPU)"
            )
        if not inside:
            return
        flying = [float(s[1]) for s in inside]
        queue = [float(s[2]) for s in inside]
        full = sum(1 for f in flying if f >= self.window)
        mean = sum(flying) / len(flying)
        # the rate over the sampled time (the pause or kill left out, as the samples)
        span = (last - 1) - (first + 1) - max(0.0, min(skip[1], last - 1) - max(skip[0], first + 1))
        counted = [
            t for t in campaign_times if first + 1 <= t <= last - 1 and not skip[0] <= t <= skip[1]
        ]
        rate_s = len(counted) / max(span, 1e-9)
        print(
            f"in flight over the drain ({len(inside)} samples every {self.every} s): mean"
            f" {mean:.1f}, p50 {pct(flying, 50):.0f}, max {max(flying):.0f}; window {self.window}"
            f" full (>= window) on {100 * full / len(inside):.0f}% of samples;"
            f" Little's law: mean in flight / rate ({rate_s:.1f}/s over the same time)"
            f" = {1000 * mean / rate_s:.0f} ms a send"
        )
        waiting = sum(queue) / max(sum(flying), 1.0)
        print(
            f"whatsapp-gateway campaign queue (priority 2) over the drain: p50"
            f" {pct(queue, 50):.0f}, max {max(queue):.0f}; {100 * waiting:.0f}% of what is in"
            " flight waits there"
        )
        # A full window with most of it waiting in whatsapp-gateway's queue: the gateway's
        # sending is the slowest stage (a larger window only lengthens its queue); a full
        # window with that queue near empty: the hops' latency, i.e. the window, binds.
        binds = (
            "the window (its sends wait in the hops, not in whatsapp-gateway's queue)"
            if full > len(inside) / 2 and waiting < 0.25
            else "whatsapp-gateway's sending (most of the window waits in its queue)"
            if full > len(inside) / 2
            else "neither the window nor the gateway's queue (the window is seldom full)"
        )
        print(f"what binds the rate: {binds}")


async def restart_timeline(
    pg_url: str, service: str, kill_at: float, ready_at: float, campaign_times: list[float]
) -> None:
    """What happened after the SIGKILL, in seconds from it: the restarted process ready,
    the first record each of its consumer groups handled (``processed_events``: when it
    had partitions again), campaigns' first release, and the stall:
    the gaps of more than a second between campaign sends from a second before the kill
    on (the sends in flight at the kill still go out first), and how long after the
    process was ready the last one ended."""
    conn = await asyncpg.connect(
        asyncpg_dsn(to_asyncpg_url(pg_url, database=f"pytake_{service.replace('-', '_')}"))
    )
    try:
        groups = await conn.fetch(
            "SELECT consumer_group, extract(epoch FROM min(processed_at)) AS at"
            " FROM processed_events WHERE processed_at > to_timestamp($1) GROUP BY 1",
            kill_at,
        )
    finally:
        await conn.close()
    conn = await asyncpg.connect(asyncpg_dsn(to_asyncpg_url(pg_url, database="pytake_campaigns")))
    try:
        released = await conn.fetchval(
            "SELECT extract(epoch FROM min(dispatched_at)) FROM campaign_recipients"
            " WHERE dispatched_at > to_timestamp($1)",
            kill_at,
        )
    finally:
        await conn.close()
    around = [t for t in campaign_times if t > kill_at - 1.0]
    gaps = [(a, b) for a, b in itertools.pairwise(around) if b - a > 1.0]
    consumed = ", ".join(f"{g['consumer_group']} +{float(g['at']) - kill_at:.1f}" for g in groups)
    first_release = f"+{float(released) - kill_at:.1f}" if released is not None else "none"
    print(
        f"after the SIGKILL of {service} (s from it): ready +{ready_at - kill_at:.1f};"
        f" first record handled, by group: {consumed or 'none'};"
        f" campaigns' first release {first_release}"
    )
    spans = ", ".join(f"+{a - kill_at:.1f} to +{b - kill_at:.1f} ({b - a:.1f} s)" for a, b in gaps)
    if gaps:
        print(
            f"  stall: no campaign send from {spans}; {sum(b - a for a, b in gaps):.1f} s in all;"
            f" sends back {gaps[-1][1] - ready_at:.1f} s after the restarted process was ready"
        )
    else:
        print("  stall: none (no gap of more than 1 s between campaign sends)")


async def departures(pg_url: str, since: float) -> dict[str, float]:
    """When each call whatsapp-gateway sent left, by message id: ``send_log.departed_at``,
    its bytes written right after the pacer found it on time for its slot."""
    conn = await asyncpg.connect(
        asyncpg_dsn(to_asyncpg_url(pg_url, database="pytake_whatsapp_gateway"))
    )
    try:
        rows = await conn.fetch(
            "SELECT message_id::text AS id, extract(epoch FROM departed_at)::float8 AS at"
            " FROM send_log WHERE departed_at >= to_timestamp($1)",
            since,
        )
    finally:
        await conn.close()
    return {r["id"]: r["at"] for r in rows}


def print_departures(left: dict[str, float], sent: list[dict[str, Any]], since: float) -> None:
    """The same windows counted where our side ends (each call's departure), and each
    call's way from there to the simulator's stamp: travel and the receiver's queueing,
    which the pacer allows 20 ms (``pacing.py``)."""
    campaign = {
        s["body"].get("biz_opaque_callback_data")
        for s in sent
        if s["type"] == "template" and stamp(s) >= since
    }
    times = sorted(left.values())
    sliding, calendar = window_max(times)
    alone, _ = window_max(sorted(at for mid, at in left.items() if mid in campaign))
    way = sorted(
        (stamp(s) - left[mid]) * 1000
        for s in sent
        if (mid := s["body"].get("biz_opaque_callback_data")) in left
    )
    print(
        f"  by whatsapp-gateway's departures (send_log.departed_at, {len(times)} calls):"
        f" most in a sliding second {sliding} (campaign alone {alone}), in a calendar"
        f" second {calendar}"
    )
    if way:
        over = sum(1 for ms in way if ms > 20)
        print(
            f"  departure -> the simulator's arrival stamp: p50 {pct(way, 50):.1f} ms,"
            f" p99 {pct(way, 99):.1f} ms, max {way[-1]:.1f} ms; over 20 ms: {over}"
        )


def stamp(sent: dict[str, Any], key: str = "received_at") -> float:
    """When the simulator received the call (``received_at``: where Meta counts it), or
    accepted it (``time``: after its own parsing and checks, on the same cores)."""
    return datetime.fromisoformat(str(sent[key])).timestamp()


def window_max(times: list[float]) -> tuple[int, int]:
    """The most sends in any sliding one-second window and in any calendar second."""
    if not times:
        return 0, 0
    sliding = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
    return sliding, max(Counter(int(t) for t in times).values())


def fullest_second(times: list[float]) -> tuple[int, float]:
    """The most sends in a sliding one-second window, and when the first window that full
    begins (``times`` sorted)."""
    counts = [bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)]
    i = max(range(len(counts)), key=counts.__getitem__)
    return counts[i], times[i]


def print_simulator_lag(lag: dict[str, Any], t_start: float, begins: float) -> None:
    """When the simulator's own event loop was late (``/_sim/loop-lag``): its arrival
    stamps were late by about as much, which no pacing on our side can prevent or see.
    For the fullest sliding second, how late the loop was as that second's first call
    was stamped (a late first stamp squeezes the second's calls together). Then its full
    garbage collections over the run (each held the loop as long)."""
    late = lag["late"]
    over = [ms for _, ms in late if ms >= 20]
    worst = max(late, key=lambda x: x[1], default=None)
    at_first = max(
        (ms for due, ms in late if due <= begins <= due + ms / 1000 + 0.005), default=0.0
    )
    where = f" (at +{worst[0] - t_start:.2f} s)" if worst else ""
    print(
        f"  the simulator's event loop (its arrival stamps late by as much): late 20 ms or"
        f" more {len(over)} times over the run, at most {worst[1] if worst else 0:.0f} ms"
        f"{where}; as the fullest second's first call was stamped: {at_first:.0f} ms"
    )
    full = [(at, ms) for at, ms in lag.get("full_collections", []) if at >= t_start]
    print(
        f"  the simulator's full garbage collections over the run: {len(full)}"
        + "".join(f"; {ms:.1f} ms at +{at - t_start:.2f} s" for at, ms in full[:5])
    )


async def slots_missed(client: httpx.AsyncClient, gateway_url: str) -> Counter[str]:
    """whatsapp-gateway's count of sends too late for their slot, by where it found them
    late: when they woke for it, or when their bytes were about to be written."""
    r = await client.get(f"{gateway_url}/metrics")
    r.raise_for_status()
    found: Counter[str] = Counter()
    for line in r.text.splitlines():
        if line.startswith("pytake_whatsapp_send_slots_missed_total{"):
            at = line.split('at="', 1)[1].split('"', 1)[0]
            found[at] += int(float(line.split()[-1]))
        elif line.startswith("pytake_whatsapp_send_slots_missed_total "):  # before the label
            found["wakeup"] += int(float(line.split()[-1]))
    return found


def steady_rate(times: list[float]) -> float:
    """Sends per second from the first to the last (0 with fewer than two)."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def rate(times: list[float]) -> str:
    if len(times) < 2:
        return "n/a"
    return f"{steady_rate(times):.1f}/s over {times[-1] - times[0]:.1f} s ({len(times)} sends)"


async def campaign_run(plat: Platform, args: argparse.Namespace) -> None:
    loop = MainLoop(plat.stack.url("api-gateway"), plat.stack.url("meta-simulator"))
    loop.gw.timeout = httpx.Timeout(60.0)
    try:
        tenant, number, _ = await prepare(plat, loop, args.n)
        convs = await agent_conversations(loop, tenant, number, args.agents)
        agents = Agents(loop, tenant, convs)
        body = {
            "name": "bench",
            "number_id": number.id,
            "template": {
                "name": "order_update",
                "language": "en_US",
                "parameters": [{"value": "{{contact.name}}", "default": "there"}],
            },
            "audience": {"filters": {"q": PREFIX}},
        }

        async def replica_ready() -> bool | None:
            # campaigns' contact replica fills in from contacts' events: a probe campaign,
            # scheduled an hour ahead (frozen at once, nothing sent) and cancelled.
            probe = await loop.call(
                "POST", "/v1/campaigns", json={**body, "name": "probe"}, headers=tenant.headers
            )
            if probe.status_code != 201:
                return None
            pid = probe.json()["id"]
            later = datetime.fromtimestamp(time.time() + 3600).astimezone().isoformat()
            resp = await loop.call(
                "POST",
                f"/v1/campaigns/{pid}/start",
                json={"scheduled_at": later},
                headers=tenant.headers,
            )
            await loop.call("POST", f"/v1/campaigns/{pid}/cancel", headers=tenant.headers)
            ready = resp.status_code == 200 and resp.json()["recipients_total"] == args.n
            return ready or None

        await poll(replica_ready, "campaigns' replica of the contacts", timeout=300, interval=2)

        stop = asyncio.Event()
        if args.baseline:
            print(f"baseline: {args.baseline} agent replies at 1/s, nothing else sending")
            task = asyncio.create_task(agents.steady("baseline", stop))
            await asyncio.sleep(args.baseline - 0.5)
            stop.set()
            await task
            await asyncio.sleep(3)

        procs = plat.processes()
        ahead = {k: p.nice() for k, p in procs.items() if p.nice() != 0}
        print(
            "processes at a niceness other than 0 (PYTAKE_PROCESS_NICE; the simulator's:"
            f" --simulator-nice): {ahead or 'none'}"
        )

        def cpus() -> dict[str, float]:
            return {k: postgres_cpu(p) if k == "postgres" else cpu(p) for k, p in procs.items()}

        idle0, t_idle = cpus(), time.monotonic()
        await asyncio.sleep(args.idle)
        idle1 = cpus()
        idle_rate = {k: (idle1[k] - idle0[k]) / (time.monotonic() - t_idle) for k in idle0}
        split = DatabaseSplit(plat.infra.pg_url)
        if args.statements:
            await reset_statements(plat.infra.pg_url)
        db0 = await split.snapshot()
        gateway_url = plat.stack.url("whatsapp-gateway")
        missed0 = await slots_missed(loop.sim, gateway_url)
        cpu0, t_cpu = cpus(), time.monotonic()
        load_before = load()
        r = await loop.call("POST", "/v1/campaigns", json=body, headers=tenant.headers)
        r.raise_for_status()
        campaign = r.json()["id"]
        t_start = time.time()
        r = await loop.call("POST", f"/v1/campaigns/{campaign}/start", headers=tenant.headers)
        r.raise_for_status()
        total = r.json()["recipients_total"]
        print(f"campaign started: {total} recipients frozen in {time.time() - t_start:.2f} s")
        stop = asyncio.Event()
        replies = asyncio.create_task(agents.steady("drain", stop))
        sampler = InFlight(plat.infra.pg_url, campaign, args.window)
        sampling = asyncio.create_task(sampler.run(stop))
        kill_at = restart_ready = paused_at = resumed_at = None
        if args.pause_after:
            # pause -> the last campaign send at the Graph API (issue #16: within 2 s)
            await asyncio.sleep(args.pause_after)
            r = await loop.call("POST", f"/v1/campaigns/{campaign}/pause", headers=tenant.headers)
            r.raise_for_status()
            paused_at = time.time()  # the pause is committed when its answer comes back
            await asyncio.sleep(args.pause_hold)
            resumed_at = time.time()
            r = await loop.call("POST", f"/v1/campaigns/{campaign}/resume", headers=tenant.headers)
            r.raise_for_status()
        if args.kill_after:
            await asyncio.sleep(args.kill_after)
            kill_at = time.time()
            plat.stack.kill(args.kill_service)
            proc = plat.stack.spawn(args.kill_service)
            await asyncio.to_thread(
                wait_ready, plat.stack.url(args.kill_service), args.ready_timeout, process=proc
            )
            restart_ready = time.time()
            print(
                f"{args.kill_service} SIGKILLed at +{kill_at - t_start:.1f} s, ready again"
                f" {restart_ready - kill_at:.1f} s later"
            )

        last = [0.0]

        async def completed() -> dict[str, Any] | None:
            resp = await loop.call("GET", f"/v1/campaigns/{campaign}/stats", headers=tenant.headers)
            stats = dict(resp.json()) if resp.status_code == 200 else {}
            if time.time() - last[0] > 10:
                last[0] = time.time()
                print(f"  +{last[0] - t_start:.0f} s: {stats.get('by_status')} load {load()}")
                print(f"    waiting: {await backlog(plat.infra.pg_url)}")
            return stats if stats.get("status") == "completed" else None

        timeout = args.timeout or args.n / LIMIT * 4 + 120
        done = True
        try:
            stats = await poll(completed, "the campaign to complete", timeout, interval=1.0)
        except TimeoutError:
            done = False
            print(f"NOT COMPLETED after {timeout:.0f} s: what reached the API so far follows")
            resp = await loop.call("GET", f"/v1/campaigns/{campaign}/stats", headers=tenant.headers)
            stats = resp.json()
        finally:
            stop.set()
            await replies
            await sampling
        drained = time.time()
        await asyncio.sleep(3)  # the last agent replies
        load_after = load()
        cpu1, wall = cpus(), time.monotonic() - t_cpu
        await asyncio.sleep(1.0)  # backends report their transactions at most once a second
        db1 = await split.snapshot()
        missed = await slots_missed(loop.sim, gateway_url) - missed0
        spent = {k: cpu1[k] - cpu0[k] for k in cpu0}
        net = {k: spent[k] - idle_rate[k] * wall for k in cpu0}
        sent = (
            await loop.sim.get("/_sim/sent", params={"phone_number_id": number.phone_number_id})
        ).json()
        sim_late = (await loop.sim.get("/_sim/loop-lag", params={"since": t_start})).json()
        left = await departures(plat.infra.pg_url, t_start)
    finally:
        await loop.aclose()

    template_sends = [s for s in sent if s["type"] == "template"]
    all_times = sorted(stamp(s) for s in sent if stamp(s) >= t_start)
    campaign_times = sorted(stamp(s) for s in template_sends)
    per_contact = Counter(s["to"] for s in template_sends)
    audience = {f"{PREFIX}{i:04d}" for i in range(args.n)}
    duplicates = sum(c - 1 for c in per_contact.values() if c > 1)
    skipped = len(audience - set(per_contact))
    strangers = len(set(per_contact) - audience)
    sliding, calendar = window_max(all_times)
    campaign_sliding, _ = window_max(campaign_times)
    accepted_sliding, _ = window_max(sorted(stamp(s, "time") for s in sent if stamp(s) >= t_start))
    base, base_missing = agents.latencies(sent, "baseline")
    drain, drain_missing = agents.latencies(sent, "drain")
    print(
        f"campaign completed {drained - t_start:.1f} s after the start; stats {stats['by_status']}"
    )
    # The number's sends from the campaign's first to its last: what its limit counts.
    number_times = [
        t for t in all_times if campaign_times and campaign_times[0] <= t <= campaign_times[-1]
    ]
    print(
        f"the number's sends at the Graph API over the drain (campaign and agents, as its"
        f" limit counts them): {rate(number_times)} (target {math.floor(LIMIT * 0.95)}-{LIMIT})"
    )
    print(f"  the campaign's alone: {rate(campaign_times)}")
    if kill_at is not None and restart_ready is not None:
        before = [t for t in campaign_times if t < kill_at]
        after = [t for t in campaign_times if t > restart_ready + 2.0]
        print(f"  before the kill: {rate(before)}; from 2 s after the restart: {rate(after)}")
        await restart_timeline(
            plat.infra.pg_url, args.kill_service, kill_at, restart_ready, campaign_times
        )
    if campaign_times:
        first = campaign_times[0]
        per_second = Counter(int(t - first) for t in campaign_times)
        span = int(campaign_times[-1] - first) + 1
        print("  campaign sends per second from the first:", [per_second[i] for i in range(span)])
    if paused_at is not None and resumed_at is not None:
        held = [t for t in campaign_times if paused_at <= t < resumed_at]
        last_send = f"{held[-1] - paused_at:.2f} s" if held else "none"
        print(
            f"pause (answered at +{paused_at - t_start:.1f} s, held {args.pause_hold:g} s):"
            f" {len(held)} campaign sends after it, the last {last_send} after it (target <= 2 s)"
        )
    skip = (paused_at or kill_at or 0.0, (resumed_at or restart_ready or 0.0) + 3.0)
    sampler.print(await sampler.latency(), campaign_times, skip)
    print(
        f"most sends on the number in any sliding second: {sliding} (campaign alone"
        f" {campaign_sliding}), in any calendar second: {calendar} (limit {LIMIT});"
        f" by the simulator's acceptance time instead of arrival: {accepted_sliding}"
    )
    print_departures(left, sent, t_start)
    if all_times:
        most, begins = fullest_second(all_times)
        kill = f", the kill at +{kill_at - t_start:.1f} s" if kill_at is not None else ""
        inside = [t for t in all_times if begins <= t < begins + 1.0]
        gaps = [round((b - a) * 1000) for a, b in itertools.pairwise(inside)]
        print(
            f"  the fullest sliding second ({most}) begins at +{begins - t_start:.2f} s{kill};"
            f" gaps between its sends (ms): min {min(gaps, default=0)},"
            f" median {sorted(gaps)[len(gaps) // 2] if gaps else 0}, max {max(gaps, default=0)}"
        )
        print_simulator_lag(sim_late, t_start, begins)
    per_send = max(len(all_times), 1)
    print(
        f"slots missed (taken anew): {missed['wakeup']} found late on waking for the slot,"
        f" {missed['write']} found late right before the write (the loop late in between;"
        f" checked only on waking, these would have left late); {missed.total() / per_send:.3f}"
        " a send (whatsapp-gateway's pytake_whatsapp_send_slots_missed_total)"
    )
    for label, values, missing in (
        ("baseline", base, base_missing),
        ("drain", drain, drain_missing),
    ):
        if values:
            print(
                f"agent reply -> Graph API, {label}: n={len(values)} p50 {pct(values, 50):.0f} ms,"
                f" p95 {pct(values, 95):.0f} ms, max {max(values):.0f} ms"
                f" (never reached the API: {missing})"
            )
    if agents.refused:
        print(f"agent replies refused: {len(agents.refused)}, e.g. {agents.refused[0]}")
    print(
        f"per contact: duplicates {duplicates}, {'skipped' if done else 'not sent yet'}"
        f" {skipped}, sends to others {strangers}"
        f" ({len(template_sends)} template sends for {args.n} contacts)"
    )
    sends = max(len(all_times), 1)
    print(
        f"CPU seconds over the drain ({wall:.0f} s wall): "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(spent.items(), key=lambda kv: -kv[1]))
    )
    print(
        "CPU ms per send net of the idle rate (measured first): "
        + ", ".join(
            f"{k} {1000 * v / sends:.1f}" for k, v in sorted(net.items(), key=lambda kv: -kv[1])
        )
        + f"; all {1000 * sum(net.values()) / sends:.0f} ms"
        + f" (idle: {sum(idle_rate.values()):.2f} CPU s/s)"
    )
    DatabaseSplit.print(db0, db1, sends)
    if args.explain:
        print_slow_plans(plat.infra, args.explain)
    if args.statements:
        await print_statements(
            plat.infra.pg_url, sends, args.statements, unit="send", per_database=True
        )
    print(
        f"load average (1/5/15 min) before/after: {load_before} / {load_after}"
        f" on {os.cpu_count()} CPUs"
    )
    steady = [t for t in number_times if not skip[0] <= t <= skip[1]]
    verdict = (
        done
        and (kill_at is not None or paused_at is not None or steady_rate(steady) >= 0.95 * LIMIT)
        and duplicates == 0
        and skipped == 0
        and sliding <= LIMIT
        and bool(drain)
        and pct(drain, 95) < 1000
    )
    print("verdict:", "OK" if verdict else "TARGET MISSED")


def main() -> None:
    global LIMIT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--baseline", type=int, default=10)
    parser.add_argument("--idle", type=float, default=10.0, help="idle CPU measured first (s)")
    parser.add_argument("--kill-after", type=float, default=15.0)
    parser.add_argument(
        "--kill-service",
        choices=("campaigns", "whatsapp-gateway"),
        default="campaigns",
        help="the service --kill-after SIGKILLs and restarts",
    )
    parser.add_argument(
        "--throughput",
        type=int,
        default=LIMIT,
        help="the number's throughput per second (a rate a slow box can drive shows the"
        " limit's edge when 80/s is out of its reach)",
    )
    parser.add_argument("--timeout", type=float, default=0.0, help="0: 4x the ideal drain + 120 s")
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    parser.add_argument(
        "--window", type=float, default=1.0, help="campaigns' in-flight window (s) for this run"
    )
    parser.add_argument(
        "--pause-after", type=float, default=0.0, help="pause S s after the start (0: none)"
    )
    parser.add_argument("--pause-hold", type=float, default=5.0, help="then resume after S s")
    parser.add_argument(
        "--simulator-nice",
        type=int,
        default=-10,
        metavar="N",
        help="the simulator's niceness (as root; 0: as the platform's): it stands for"
        " Meta's edge, which does not share our cores, and stamps each call's arrival on"
        " its event loop",
    )
    statements_option(parser, "send")
    parser.add_argument(
        "--explain",
        type=float,
        default=0,
        metavar="MS",
        help="load auto_explain (costs PostgreSQL CPU: not for the CPU figures) and print,"
        " over the run, the statements slower than MS ms and the plan of each one's slowest"
        " execution",
    )
    args = parser.parse_args()
    if args.n > 10_000:
        sys.exit("--n: at most 10,000 (the phone numbers are +1415777NNNN)")
    LIMIT = args.throughput
    print(box())
    print(
        f"campaigns' in-flight window: {args.window:g} s ({math.ceil(LIMIT * args.window)} sends)"
    )
    with (
        platform(
            "campaign-send",
            extra_env={"PYTAKE_CAMPAIGN_IN_FLIGHT_WINDOW_S": str(args.window)},
            ready_timeout=args.ready_timeout,
            statements=bool(args.statements),
            explain_ms=args.explain,
        ) as plat,
        reniced(plat.processes(), ("meta-simulator",), args.simulator_nice),
    ):
        asyncio.run(campaign_run(plat, args))


if __name__ == "__main__":
    main()
