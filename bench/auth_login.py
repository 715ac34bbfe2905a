"""Benchmark: password logins against the auth service (argon2id + PostgreSQL).

Starts embedded PostgreSQL (unless PYTAKE_DATABASE_URL is set), migrates and
serves auth with uvicorn in a subprocess on a free loopback port (workers off:
no broker needed), registers N users, then

1. one client logging in serially for a few seconds (the floor: one argon2
   verification plus two short transactions);
2. C concurrent clients logging in for D seconds (closed loop).

It prints the rate, p50/p95/p99 and the argon2 parameters in force (checked
against OWASP's argon2id guidance), and first the cost of one verification at
each of OWASP's equivalent argon2id configurations in libsodium (what auth
uses) and in argon2-cffi, one thread, median of a few. The throttle stays on and is exercised:
each request comes from its own address in ``X-Forwarded-For`` (the loopback
peer is a trusted proxy), and logins succeed, so no per-address or per-email
window fills up.

For the concurrent run it prints the CPU per login of the auth process (its event
loop thread apart from the argon2 threads), of the load generator (the API
gateway's keep-alive client on uvloop, kept lean because it shares the cores) and
of PostgreSQL, and the login rate their sum allows on this machine's CPUs: on a
box shared with other work, the figures to compare.

Usage: python bench/auth_login.py [--users 64] [--c 16] [--duration 20]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import psutil
import uvloop
from _measure import LeanClient, cpu, pct, postgres_cpu, postmaster, stop
from argon2 import PasswordHasher, Type

from pytake_auth.config import OWASP_ARGON2ID, Settings, argon2_is_owasp_compliant
from pytake_auth.passwords import Passwords
from pytake_devstack.infra import EmbeddedPostgres, free_port

PASSWORD = "bench passphrase 0123"
_addresses = (
    b"10.%d.%d.%d" % abc for abc in itertools.product(range(256), range(256), range(1, 255))
)


class Client(LeanClient):
    """The lean client, each request from the next client address."""

    async def post(self, path: bytes, body: dict[str, str]) -> tuple[int, bytes]:
        """POST ``body`` as JSON from the next client address; the status and the answer."""
        headers = [(b"content-type", b"application/json"), (b"x-forwarded-for", next(_addresses))]
        return await self.request("POST", path, headers, json.dumps(body).encode())


async def register_users(client: Client, n: int) -> list[str]:
    emails = [f"bench-{i}-{os.getpid()}@example.com" for i in range(n)]
    sem = asyncio.Semaphore(8)

    async def one(email: str) -> None:
        body = {
            "email": email,
            "password": PASSWORD,
            "full_name": "Bench User",
            "organization_name": "Bench Org",
        }
        async with sem:
            status, answer = await client.post(b"/v1/auth/register", body)
        if status != 201:
            raise RuntimeError(f"register answered {status}: {answer[:200]!r}")

    await asyncio.gather(*(one(e) for e in emails))
    return emails


async def run_clients(
    client: Client, emails: list[str], concurrency: int, duration: float
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration

    async def worker(index: int) -> None:
        nonlocal errors
        mine = emails[index::concurrency] or emails
        for email in itertools.cycle(mine):
            if time.perf_counter() >= deadline:
                return
            start = time.perf_counter()
            status, _ = await client.post(b"/v1/auth/login", {"email": email, "password": PASSWORD})
            if status == 200:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return latencies, errors, time.perf_counter() - began


def report(label: str, latencies: list[float], errors: int, elapsed: float) -> None:
    ms = [v * 1000 for v in latencies]
    print(
        f"{label}: {len(ms)} logins in {elapsed:.1f} s = {len(ms) / elapsed:.1f}/s, "
        f"errors {errors}; p50 {pct(ms, 50):.0f} ms  p95 {pct(ms, 95):.0f} ms  "
        f"p99 {pct(ms, 99):.0f} ms  mean {statistics.mean(ms):.0f} ms  max {max(ms):.0f} ms"
    )


def event_loop_cpu(p: psutil.Process) -> float:
    """CPU seconds of the server's main thread (its event loop; hashing runs in others)."""
    main = next((t for t in p.threads() if t.id == p.pid), None)
    return float(main.user_time + main.system_time) if main is not None else 0.0


async def bench(
    url: str,
    users: int,
    concurrency: int,
    duration: float,
    server: psutil.Process,
    pg_server: psutil.Process | None,
) -> None:
    client = Client(url, concurrency + 4)
    try:
        t = time.perf_counter()
        emails = await register_users(client, users)
        print(f"registered {len(emails)} users in {time.perf_counter() - t:.1f} s")
        report("1 client (serial)", *await run_clients(client, emails, 1, min(5.0, duration)))
        watched = {"auth process": (server, cpu), "load generator": (psutil.Process(), cpu)}
        if pg_server is not None:
            watched["PostgreSQL"] = (pg_server, postgres_cpu)
        before = {name: used(p) for name, (p, used) in watched.items()}
        loop_before = event_loop_cpu(server)
        result = await run_clients(client, emails, concurrency, duration)
        report(f"{concurrency} clients", *result)
        logins = max(1, len(result[0]))
        total = 0.0
        for name, (p, measure) in watched.items():
            used = (measure(p) - before[name]) / logins * 1000
            total += used
            print(f"  {name} CPU per login: {used:.1f} ms")
            if p is server:
                loop = (event_loop_cpu(server) - loop_before) / logins * 1000
                print(
                    f"    event loop thread {loop:.1f} ms, "
                    f"other threads (argon2) {used - loop:.1f} ms"
                )
        cores = os.cpu_count() or 1
        print(
            f"  all three: {total:.1f} ms per login -> at most {cores / total * 1000:.0f} "
            f"logins/s on {cores} CPUs"
        )
    finally:
        client.close()


def median_ms(check: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        began = time.perf_counter()
        check()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def verify_costs(state: Path, rounds: int = 7) -> None:
    print(f"one argon2id verification, one thread (median of {rounds}):")
    for m, t in OWASP_ARGON2ID:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, state_dir=state, argon2_memory_cost_kib=m, argon2_time_cost=t
        )
        sodium = Passwords(settings)
        cffi = PasswordHasher(time_cost=t, memory_cost=m, parallelism=1, type=Type.ID)
        encoded = sodium.hash_sync(PASSWORD)
        fast = median_ms(partial(sodium.verify_sync, encoded, PASSWORD), rounds)
        portable = median_ms(partial(cffi.verify, encoded, PASSWORD), rounds)
        print(f"  m={m:>6} KiB t={t}: libsodium {fast:5.1f} ms   argon2-cffi {portable:5.1f} ms")


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"auth exited with {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("auth did not become healthy")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--c", type=int, default=16)
    parser.add_argument("--duration", type=float, default=20.0)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="pytake-bench-auth-"))
    pg = None
    db_url = os.environ.get("PYTAKE_DATABASE_URL")
    if not db_url:
        pg = EmbeddedPostgres(state / "pg")
        db_url = pg.start()
    port = free_port()
    env = {
        **os.environ,
        "PYTAKE_DATABASE_URL": db_url,
        "PYTAKE_STATE_DIR": str(state),
        "PYTAKE_HOST": "127.0.0.1",
        "PYTAKE_PORT": str(port),
        "PYTAKE_RUN_WORKERS": "false",
        "PYTAKE_LOG_LEVEL": "WARNING",
    }
    settings = Settings(_env_file=None, **{"state_dir": state})  # type: ignore[call-arg]
    m, t, p = (
        settings.argon2_memory_cost_kib,
        settings.argon2_time_cost,
        settings.argon2_parallelism,
    )
    compliant = argon2_is_owasp_compliant(m, t, p)
    print(
        f"argon2id m={m} KiB ({m / 1024:.0f} MiB) t={t} p={p}: "
        f"{'meets' if compliant else 'BELOW'} OWASP guidance; "
        f"hash concurrency {settings.password_hash_concurrency} on {os.cpu_count()} CPUs"
    )
    verify_costs(state)
    server = None
    try:
        subprocess.run([sys.executable, "-m", "pytake_auth", "migrate"], env=env, check=True)
        server = subprocess.Popen([sys.executable, "-m", "pytake_auth", "serve"], env=env)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, server)
        uvloop.run(
            bench(
                url,
                args.users,
                args.c,
                args.duration,
                psutil.Process(server.pid),
                postmaster(pg) if pg is not None else None,
            )
        )
    finally:
        stop(server)
        if pg:
            pg.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
