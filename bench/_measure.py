"""Shared by the benchmarks (not a benchmark itself): CPU accounting, percentiles,
and the embedded platform they start.

Each benchmark starts what it measures on this machine: embedded PostgreSQL and
the Tansu broker unless ``PYTAKE_DATABASE_URL`` / ``PYTAKE_KAFKA_BOOTSTRAP`` name
real ones, and, for whole-platform runs, every service as a process
(:class:`pytake_devstack.stack.LocalStack`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from pytake_api_gateway.upstream import Origin, UpstreamPool
from pytake_common.pgtenant import asyncpg_dsn
from pytake_devstack.infra import EmbeddedPostgres, TansuBroker
from pytake_devstack.stack import READY_TIMEOUT_S, LocalStack

#: What every whole-platform benchmark sets: quiet logs, the simulator's too (at info it
#: logged every webhook it posted and uvicorn every request), and no rate limits in the
#: way of a load generator that sends from one address.
QUIET = {
    "PYTAKE_LOG_LEVEL": "WARNING",
    "PYTAKE_SIMULATOR_LOG_LEVEL": "WARNING",
    "PYTAKE_RATELIMIT_ENABLED": "false",
}


def cpu(p: psutil.Process) -> float:
    """User + system CPU seconds of ``p`` so far (0 once it is gone)."""
    with contextlib.suppress(psutil.Error):
        t = p.cpu_times()
        return float(t.user + t.system)
    return 0.0


def postgres_cpu(postmaster: psutil.Process) -> float:
    """A PostgreSQL server's CPU: the postmaster, the backends it reaped, and the live ones."""
    with contextlib.suppress(psutil.Error):
        t = postmaster.cpu_times()
        total = float(t.user + t.system + t.children_user + t.children_system)
        for child in postmaster.children():
            total += cpu(child)
        return total
    return 0.0


async def idle_cpu(procs: dict[str, psutil.Process], seconds: float) -> None:
    """Print each process's CPU over ``seconds`` of nothing happening (and the total)."""

    def snapshot() -> dict[str, float]:
        return {k: postgres_cpu(p) if k == "postgres" else cpu(p) for k, p in procs.items()}

    before = snapshot()
    await asyncio.sleep(seconds)
    after = snapshot()
    parts = [f"{k} {(after[k] - before[k]) / seconds * 100:.1f}%" for k in procs]
    total = sum(after[k] - before[k] for k in procs) / seconds * 100
    print(f"idle CPU over {seconds:.0f} s (% of one core): " + ", ".join(parts))
    print(f"  total {total:.1f}%")


class TopicObserver(abc.ABC):
    """Reads ``topics`` from their end without a group (nothing committed) and hands each
    record to :meth:`seen` (its timestamp is when the producer sent it)."""

    def __init__(self, bootstrap: str, topics: list[str], fetch_max_wait_ms: int = 100) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.consumer: AIOKafkaConsumer | None = None
        self.task: asyncio.Task[None] | None = None

    @abc.abstractmethod
    def seen(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """One record read (each subclass keeps what its report needs)."""

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            enable_auto_commit=False,
        )
        await self.consumer.start()
        await self.consumer.topics()  # the topics' partitions
        tps = [
            TopicPartition(topic, p)
            for topic in self.topics
            for p in self.consumer.partitions_for_topic(topic) or {0}
        ]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self.consumer is not None
        async for record in self.consumer:
            with contextlib.suppress(Exception):  # not an event of ours: skipped
                self.seen(record)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.consumer is not None:
            await self.consumer.stop()


def postmaster(pg: EmbeddedPostgres) -> psutil.Process:
    return psutil.Process(int((pg.pgdata / "postmaster.pid").read_text().split()[0]))


def stop(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate a server a benchmark started (killed after 15 s)."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


def calibrate(rounds: int = 5) -> float:
    """This box's speed now, in ms: the best of ``rounds`` runs of a fixed workload
    (interpreted Python, JSON and HMAC-SHA256, as a service's hot path mixes them).

    The VM's speed drifts by 15-20 % within an hour: every benchmark prints this
    beside its figures so that runs can be compared (lower is faster).
    """
    import hashlib
    import hmac
    import json
    import time

    document = {
        "entry": [{"id": str(i), "changes": [{"value": {"text": "x" * 64}}]} for i in range(20)]
    }
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(200):
            raw = json.dumps(document).encode()
            hmac.new(b"secret", raw, hashlib.sha256).hexdigest()
            json.loads(raw)
            sum(j * j for j in range(500 + i % 7))
        best = min(best, time.perf_counter() - started)
    return best * 1000


def ring_hop_us(processes: int = 12, hops: int = 3600, rounds: int = 3) -> float:
    """This box's cost of handing work between processes, in microseconds: the best of
    ``rounds`` runs of a token passed ``hops`` times round a ring of ``processes`` forked
    processes (socketpairs), each writing to 64 pages of its own 1 MiB on every pass.

    :func:`calibrate` is pure computation in one process. The platform is a dozen
    processes handing work to each other (sockets, epoll, PostgreSQL, the broker), which
    a VM can make dearer while ``calibrate`` barely moves: on 2026-12-05 the same commit
    needed 3x the CPU per inbound message of the session before, on a box whose
    ``calibrate`` read the same (11.5-11.9 ms). This figure is printed beside it so that
    the next such box shows on this count too (10 us on that box; the box before was
    not measured).
    """
    import os
    import socket
    import time

    pairs = [socket.socketpair() for _ in range(processes)]
    children = []
    for i in range(1, processes):
        pid = os.fork()
        if pid == 0:  # pass the token on until it is b"q"; exit after passing that
            memory, at = bytearray(1 << 20), 0
            inbox, outbox = pairs[i][1], pairs[(i + 1) % processes][0]
            while (token := inbox.recv(1)) and token != b"q":
                for k in range(64):
                    memory[(at + k * 4096) % len(memory)] = 1
                at = (at + 64 * 4096) % len(memory)
                outbox.sendall(token)
            outbox.sendall(b"q")
            os._exit(0)
        children.append(pid)
    inbox, outbox = pairs[0][1], pairs[1][0]
    laps = max(hops // processes, 1)
    best = float("inf")
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(laps):
                outbox.sendall(b"x")
                inbox.recv(1)
            best = min(best, time.perf_counter() - started)
    finally:
        outbox.sendall(b"q")
        inbox.recv(1)
        for pid in children:
            os.waitpid(pid, 0)
        for pair in pairs:
            for end in pair:
                end.close()
    return best / (laps * processes) * 1e6


def box() -> str:
    """The line every benchmark prints first: both of the box's speed figures."""
    return (
        f"box calibration: {calibrate():.1f} ms (a fixed CPU workload) and"
        f" {ring_hop_us():.0f} us a hop round a ring of 12 processes (lower is faster)"
    )


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class LeanClient:
    """The load generator's HTTP client: the gateway's keep-alive pool, run on uvloop
    (about 25 µs of CPU per request against 89 for aiohttp in ``bench/gateway_proxy.py``'s
    client comparison): the generator shares the 2 cores with what it measures."""

    def __init__(self, url: str, connections: int) -> None:
        self.origin = Origin.parse(url)
        self.pool = UpstreamPool(
            limit=connections, keepalive_s=60.0, connect_timeout_s=5.0, read_timeout_s=30.0
        )

    async def request(
        self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b""
    ) -> tuple[int, bytes]:
        """Send one request (``target``: path and query); the status and the answer."""
        response = await self.pool.request(self.origin, method, target, headers, body)
        try:
            return response.status, await response.read()
        finally:
            response.release()

    def close(self) -> None:
        self.pool.close()


@dataclass
class Infrastructure:
    """PostgreSQL and the broker a benchmark runs on; ``pg``/``broker`` are None when real
    ones were named in the environment (their CPU is then not ours to measure)."""

    state: Path
    pg_url: str
    bootstrap: str
    pg: EmbeddedPostgres | None
    broker: TansuBroker | None

    @property
    def postmaster(self) -> psutil.Process | None:
        return postmaster(self.pg) if self.pg is not None else None


_SLOW = re.compile(r"LOG:  duration: ([0-9.]+) ms  plan:")


def print_slow_plans(infra: Infrastructure, threshold_ms: float, plan_lines: int = 30) -> None:
    """What auto_explain logged over the run (``infrastructure(explain_ms=...)``): the
    statements slower than ``threshold_ms`` by their text, how often and how slow, and the
    plan of each one's slowest execution (actual rows and loops: a scan repeated per row
    of another shows as loops in the thousands)."""
    if infra.pg is None:
        print("slow plans: only on the embedded PostgreSQL")
        return
    entries: list[tuple[float, list[str]]] = []
    for line in (infra.pg.pgdata / "log").read_text(errors="replace").splitlines():
        found = _SLOW.search(line)
        if found:
            entries.append((float(found.group(1)), []))
        elif entries and line.startswith("\t"):
            entries[-1][1].append(line[1:])
    by_query: dict[str, list[tuple[float, list[str]]]] = {}
    for took, lines in entries:
        plan_at = next((i for i, x in enumerate(lines) if "(cost=" in x), len(lines))
        text = " ".join(x for x in lines[:plan_at] if not x.startswith("Query Parameters"))
        key = " ".join(text.replace("Query Text:", "").split())[:100]
        by_query.setdefault(key, []).append((took, lines[plan_at:]))
    print(f"statements slower than {threshold_ms:g} ms (auto_explain), by text: {len(entries)}")
    for key, runs in sorted(by_query.items(), key=lambda kv: -sum(t for t, _ in kv[1])):
        worst, plan = max(runs, key=lambda r: r[0])
        total = sum(t for t, _ in runs)
        print(f"  {len(runs):5} x, {total / 1000:7.2f} s in all, slowest {worst:8.1f} ms: {key}")
        for x in plan[:plan_lines]:
            print(f"      {x[:150]}")


def sql(url: str, statement: str) -> None:
    """Run one statement on the server at ``url`` (its ``postgres`` database)."""

    async def run() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(url, database="postgres"))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@contextlib.contextmanager
def infrastructure(
    prefix: str, *, broker: bool = True, statements: bool = False, explain_ms: float = 0
) -> Iterator[Infrastructure]:
    """Embedded PostgreSQL and Tansu unless named in the environment; ``statements``
    loads pg_stat_statements into the embedded server (it costs the server CPU: not for
    the runs whose CPU is the figure); ``explain_ms``: auto_explain logs the plan each
    statement slower than that ran, with its actual rows and loops (:func:`print_slow_plans`;
    it costs the server CPU too)."""
    state = Path(tempfile.mkdtemp(prefix=f"pytake-{prefix}-"))
    pg = tansu = None
    pg_url = os.environ.get("PYTAKE_DATABASE_URL", "")
    bootstrap = os.environ.get("PYTAKE_KAFKA_BOOTSTRAP", "")
    try:
        if not pg_url:
            pg = EmbeddedPostgres(state / "pg")
            pg_url = pg.start()
            preload = ["pg_stat_statements"] if statements else []
            if explain_ms:
                preload.append("auto_explain")
                sql(pg_url, f"ALTER SYSTEM SET auto_explain.log_min_duration = '{explain_ms:g}ms'")
                sql(pg_url, "ALTER SYSTEM SET auto_explain.log_analyze = on")
            if preload:
                sql(pg_url, f"ALTER SYSTEM SET shared_preload_libraries = {', '.join(preload)}")
                pg_url = pg.restart()
            if statements:
                sql(pg_url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        if broker and not bootstrap:
            tansu = TansuBroker()
            bootstrap = tansu.start()
        yield Infrastructure(state, pg_url, bootstrap, pg, tansu)
    finally:
        if tansu is not None:
            tansu.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(state, ignore_errors=True)  # a 2M-message database is gigabytes


@dataclass
class Platform:
    infra: Infrastructure
    stack: LocalStack

    def processes(self) -> dict[str, psutil.Process]:
        """Every process of ours on the box by name: the services, Tansu and the postmaster."""
        procs = {k: psutil.Process(p.pid) for k, p in self.stack.procs.items()}
        broker = self.infra.broker
        if broker is not None and broker.proc is not None:
            procs["tansu"] = psutil.Process(broker.proc.pid)
        master = self.infra.postmaster
        if master is not None:
            procs["postgres"] = master
        return procs


@contextlib.contextmanager
def platform(
    prefix: str,
    extra_env: dict[str, str] | None = None,
    ready_timeout: float = READY_TIMEOUT_S,
    statements: bool = False,
    explain_ms: float = 0,
) -> Iterator[Platform]:
    """The whole platform, every service a process, as ``make run`` starts it (each
    process given ``ready_timeout`` seconds to answer ready: a busy box imports slowly;
    ``statements``, ``explain_ms``: see :func:`infrastructure`)."""
    with infrastructure(prefix, statements=statements, explain_ms=explain_ms) as infra:
        stack = LocalStack(
            infra.pg_url, infra.bootstrap, infra.state, extra_env=QUIET | (extra_env or {})
        )
        try:
            try:
                stack.start(ready_timeout)
            except Exception:
                print(stack.log_tail(), file=sys.stderr)
                raise
            yield Platform(infra, stack)
        finally:
            stack.stop()


@contextlib.contextmanager
def reniced(procs: dict[str, psutil.Process], names: tuple[str, ...], nice: int) -> Iterator[None]:
    """``names`` (every thread) at ``nice`` while inside, back to their value after."""
    chosen = [procs[name] for name in names if name in procs] if nice else []
    before = {proc.pid: proc.nice() for proc in chosen}

    def set_all(value_of: Callable[[psutil.Process], int]) -> None:
        for proc in chosen:
            for thread in proc.threads():
                with contextlib.suppress(psutil.Error, OSError):
                    os.setpriority(os.PRIO_PROCESS, thread.id, value_of(proc))

    set_all(lambda _proc: nice)
    try:
        yield
    finally:
        set_all(lambda proc: before[proc.pid])
