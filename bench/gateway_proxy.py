"""Benchmark: what the API gateway costs on top of a trivial upstream.

In one run, on loopback only, starts two trivial upstreams (each a uvicorn
process answering a small JSON document with no I/O: a bare ASGI app, the
worst case for the ratio, and a FastAPI endpoint, the framework cost every
PyTake service pays; the bare one also serves the JWKS of a TokenFactory key)
and the real gateway (``python -m pytake_api_gateway serve``, its own process)
in front of them. For each upstream it measures the upstream directly and
through the gateway with a valid bearer token, so token verification (cached),
the revocation check and the per-organization rate limit are on the measured
path (the limit is set high enough never to refuse).

Each comparison is a throughput run (32 connections, closed loop) and an
unloaded latency run (1 connection), each after a 2 s warm-up. The load
generator is ``wrk`` when installed (``apt-get install -y wrk``): one C thread
doing a few µs of work per request, so the Python servers are the bottleneck;
without it, an aiohttp generator in a separate process (itself slower than the
upstream: figures from it understate the direct rate). Each process' CPU per
request (from /proc) is printed too: it is what shows where the time goes on a
machine shared with other work.

Last, the hot-path HTTP client is chosen by measurement: each candidate
(aiohttp configured as the gateway used it, httpx, and the gateway's own
``UpstreamPool``) fetches the bare upstream's answer from one process with
``--connections`` requests in flight; its CPU per request is printed
(``--no-clients`` skips this part).

Usage: python bench/gateway_proxy.py [--duration 10] [--connections 32]
                                     [--generator auto|wrk|aiohttp] [--no-clients]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _bare_endpoint import lifespan

BODY = json.dumps(
    {"items": [{"id": "0b6f3a52-3f3c-4d8e-9a57-1f5f1c2b9d10", "name": "Ana", "phone": "+1555"}]}
).encode()
ORGANIZATION = "6f1c1f7e-8a3a-4c47-9a0e-6a1ad1b0a001"


# -- the trivial upstreams (each in its own process: ``--upstream PORT --kind K``) -------


def bare_asgi_app(jwks: bytes) -> Any:
    """The least an upstream can do: the ratio against it is the worst case."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        path = scope["path"]
        if path.startswith("/v1/"):
            body, status = BODY, 200
        elif path == "/.well-known/jwks.json":
            body, status = jwks, 200
        elif path == "/healthz":
            body, status = b'{"status":"ok"}', 200
        else:
            body, status = b'{"code":"not_found"}', 404
        # Sized, as FastAPI's JSON responses are.
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def fastapi_app(jwks: bytes) -> Any:
    """A FastAPI endpoint with no I/O: the framework cost every PyTake service pays."""
    from fastapi import FastAPI, Response

    app = FastAPI()
    items = json.loads(BODY)

    @app.get("/v1/conversations")
    async def conversations() -> dict[str, Any]:
        return dict(items)

    @app.get("/.well-known/jwks.json")
    async def keys() -> Response:
        return Response(jwks, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def run_upstream(port: int, kind: str) -> None:
    import uvicorn

    jwks = os.environ["BENCH_JWKS"].encode()
    app = bare_asgi_app(jwks) if kind == "asgi" else fastapi_app(jwks)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


# -- processes ------------------------------------------------------------------------


def free_port() -> int:
    from pytake_devstack.infra import free_port as pick

    return pick()


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy in {timeout} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- load generators --------------------------------------------------------------------


@dataclass
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(url: str, headers: dict[str, str], connections: int, seconds: float) -> Result:
    command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    assert total is not None, out
    # The "Latency Distribution" lines (not the "+/- Stdev" column, e.g. "98.99%").
    p50 = re.search(r"^\s+50%\s+(\S+)$", out, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)$", out, re.MULTILINE)
    assert p50 is not None and p99 is not None, out
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    requests = int(total.group(1))
    return Result(
        requests=requests,
        seconds=requests / rate if rate else seconds,
        p50_ms=_wrk_ms(p50.group(1)),
        p99_ms=_wrk_ms(p99.group(1)),
        errors=(int(errors.group(1)) if errors else 0)
        + (sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1))) if socket_errors else 0),
    )


def _aiohttp_worker(
    url: str, headers: dict[str, str], connections: int, seconds: float, out: Any
) -> None:
    import aiohttp

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> tuple[list[float], int]:
        latencies: list[float] = []
        errors = 0
        connector = aiohttp.TCPConnector(limit=connections, force_close=False)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            deadline = time.perf_counter() + seconds

            async def loop() -> None:
                nonlocal errors
                while (start := time.perf_counter()) < deadline:
                    async with session.get(url) as response:
                        await response.read()
                        errors += response.status != 200
                    latencies.append(time.perf_counter() - start)

            await asyncio.gather(*(loop() for _ in range(connections)))
        return latencies, errors

    started = time.perf_counter()
    latencies, errors = asyncio.run(main())
    out.put((latencies, errors, time.perf_counter() - started))


def run_aiohttp(url: str, headers: dict[str, str], connections: int, seconds: float) -> Result:
    queue: mp.Queue[Any] = mp.Queue()
    worker = mp.Process(target=_aiohttp_worker, args=(url, headers, connections, seconds, queue))
    worker.start()
    latencies, errors, elapsed = queue.get(timeout=seconds + 60)
    worker.join()
    latencies.sort()
    return Result(
        requests=len(latencies),
        seconds=elapsed,
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        errors=errors,
    )


# -- hot-path client candidates ---------------------------------------------------------


def _client_candidates() -> dict[str, Any]:
    """name -> async factory of ``(fetch(port, headers) -> body, close())``."""

    async def aiohttp_session() -> tuple[Any, Any]:
        import aiohttp
        from yarl import URL

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=512, limit_per_host=0, keepalive_timeout=4.0),
            timeout=aiohttp.ClientTimeout(total=None, connect=5.0, sock_read=15.0),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            trust_env=False,
        )

        async def fetch(port: int, headers: list[tuple[bytes, bytes]]) -> bytes:
            url = URL(f"http://127.0.0.1:{port}/v1/contacts", encoded=True)
            pairs = [(n.decode(), v.decode()) for n, v in headers]
            async with session.request("GET", url, headers=pairs, allow_redirects=False) as r:
                return await r.read()

        return fetch, session.close

    async def httpx_client() -> tuple[Any, Any]:
        client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=512),
            timeout=15.0,
        )

        async def fetch(port: int, headers: list[tuple[bytes, bytes]]) -> bytes:
            response = await client.get(f"http://127.0.0.1:{port}/v1/contacts", headers=headers)
            return response.content

        return fetch, client.aclose

    async def upstream_pool() -> tuple[Any, Any]:
        from pytake_api_gateway.upstream import Origin, UpstreamPool

        pool = UpstreamPool(limit=512, keepalive_s=4.0, connect_timeout_s=5.0, read_timeout_s=15.0)
        origins: dict[int, Origin] = {}

        async def fetch(port: int, headers: list[tuple[bytes, bytes]]) -> bytes:
            origin = origins.get(port) or origins.setdefault(
                port, Origin.parse(f"http://127.0.0.1:{port}")
            )
            response = await pool.request(origin, "GET", b"/v1/contacts", headers)
            try:
                return await response.read()
            finally:
                response.release()

        async def close() -> None:
            pool.close()

        return fetch, close

    return {
        "aiohttp.ClientSession": aiohttp_session,
        "httpx.AsyncClient": httpx_client,
        "UpstreamPool (httptools)": upstream_pool,
    }


def _client_worker(name: str, port: int, connections: int, seconds: float, out: Any) -> None:
    import uvloop

    async def main() -> tuple[int, float, float]:
        fetch, close = await _client_candidates()[name]()
        headers = [
            (b"authorization", b"Bearer " + b"x" * 300),
            (b"accept", b"application/json"),
            (b"x-request-id", uuid.uuid4().hex.encode()),
            (b"x-forwarded-for", b"127.0.0.1"),
        ]
        count = 0

        async def loop(until: float) -> None:
            nonlocal count
            while time.perf_counter() < until:
                if await fetch(port, headers) != BODY:
                    raise RuntimeError(f"{name}: unexpected answer")
                count += 1

        await asyncio.gather(*(loop(time.perf_counter() + 1.0) for _ in range(connections)))
        count = 0
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(loop(wall + seconds) for _ in range(connections)))
        result = count, time.process_time() - cpu, time.perf_counter() - wall
        await close()
        return result

    out.put(uvloop.run(main()))


def compare_clients(port: int, connections: int, seconds: float) -> None:
    print(
        f"hot-path HTTP client, one process fetching the bare upstream, {connections} in flight, "
        f"{seconds:g} s each (CPU of the client process only):"
    )
    for name in _client_candidates():
        queue: mp.Queue[Any] = mp.Queue()
        worker = mp.Process(target=_client_worker, args=(name, port, connections, seconds, queue))
        worker.start()
        count, cpu, wall = queue.get(timeout=seconds + 120)
        worker.join()
        print(
            f"  {name:<26} {cpu / max(count, 1) * 1e6:7.0f} µs CPU/request   "
            f"{count / wall:8,.0f} req/s"
        )


# -- the run --------------------------------------------------------------------------


def measure(
    generator: str,
    url: str,
    headers: dict[str, str],
    connections: int,
    seconds: float,
    pids: dict[str, int],
) -> tuple[Result, dict[str, float]]:
    """One run after a short warm-up; also each process' CPU per request (µs)."""
    run = run_wrk if generator == "wrk" else run_aiohttp
    run(url, headers, connections, min(2.0, seconds))  # warm-up: pools, caches, token cache
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    generator_before = _children_cpu()
    result = run(url, headers, connections, seconds)
    cpu = {
        name: (cpu_seconds(pid) - before[name]) / max(result.requests, 1) * 1e6
        for name, pid in pids.items()
    }
    cpu["load generator"] = (_children_cpu() - generator_before) / max(result.requests, 1) * 1e6
    return result, cpu


def _children_cpu() -> float:
    """CPU of the finished children (the load generator's runs) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def capacity(cpu: dict[str, float]) -> float:
    """Requests/s the measured CPU per request allows on this machine: each
    process is one thread (at most one core), all share ``os.cpu_count()``.
    Unlike the measured rate, it does not depend on what else the machine runs."""
    busiest = max(cpu.values())
    return min(1e6 / busiest, (os.cpu_count() or 1) * 1e6 / sum(cpu.values()))


def show(label: str, result: Result, cpu: dict[str, float]) -> None:
    load = ", ".join(f"{name} {micros:.0f}" for name, micros in cpu.items())
    print(
        f"  {label:<12} {result.rate:>8,.0f} req/s   p50 {result.p50_ms:6.2f} ms   "
        f"p99 {result.p99_ms:7.2f} ms   errors {result.errors}   CPU µs/request: {load}"
    )


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)


def compare(
    generator: str,
    label: str,
    direct_url: str,
    proxied_url: str,
    headers: dict[str, str],
    pids: dict[str, int],
    connections: int,
    seconds: float,
) -> None:
    print(f"{label}")
    upstream_only = {"upstream": pids["upstream"]}
    print(f" throughput, {connections} connections, {seconds:g} s each:")
    direct, direct_cpu = measure(
        generator, direct_url, headers, connections, seconds, upstream_only
    )
    show("direct", direct, direct_cpu)
    proxied, proxied_cpu = measure(generator, proxied_url, headers, connections, seconds, pids)
    show("via gateway", proxied, proxied_cpu)
    print(f" latency, 1 connection, {seconds / 2:g} s each:")
    direct1, cpu = measure(generator, direct_url, headers, 1, seconds / 2, upstream_only)
    show("direct", direct1, cpu)
    proxied1, cpu = measure(generator, proxied_url, headers, 1, seconds / 2, pids)
    show("via gateway", proxied1, cpu)
    print(
        f" => via gateway / direct: {proxied.rate / direct.rate * 100:.0f}% of the req/s "
        f"(target >= 50%); added p50: {proxied1.p50_ms - direct1.p50_ms:.2f} ms at 1 connection "
        f"(target <= 1 ms), {proxied.p50_ms - direct.p50_ms:.2f} ms at {connections}"
    )
    expected_direct, expected_proxied = capacity(direct_cpu), capacity(proxied_cpu)
    print(
        f" => from CPU per request ({connections} connections; robust to other load): "
        f"direct {expected_direct:,.0f} req/s, via gateway {expected_proxied:,.0f} req/s, "
        f"{expected_proxied / expected_direct * 100:.0f}%"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--generator", choices=("auto", "wrk", "aiohttp"), default="auto")
    parser.add_argument(
        "--no-clients", action="store_true", help="skip the hot-path client comparison"
    )
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=("asgi", "fastapi"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        run_upstream(args.upstream, args.kind)
        return

    generator = args.generator
    if generator in ("auto", "wrk") and shutil.which("wrk") is None:
        print("wrk not found (install it with: apt-get install -y wrk); using aiohttp instead")
        if generator == "wrk":
            sys.exit(1)
        generator = "aiohttp"
    elif generator == "auto":
        generator = "wrk"

    from pytake_devstack.tokens import TokenFactory

    tokens = TokenFactory()
    token = tokens.mint(organization_id=uuid.UUID(ORGANIZATION), ttl=3600)
    headers = {"Authorization": f"Bearer {token}"}

    ports = {"asgi": free_port(), "fastapi": free_port(), "gateway": free_port()}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {**os.environ, "BENCH_JWKS": json.dumps(tokens.jwks())}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for kind in ("asgi", "fastapi"):
            processes[kind] = start(
                [sys.executable, __file__, "--upstream", str(ports[kind]), "--kind", kind], env
            )
        gateway_env = {
            **os.environ,
            "PYTAKE_ENV": "test",
            "PYTAKE_SECRET_KEY": secrets.token_urlsafe(32),
            "PYTAKE_GATEWAY_PORT": str(ports["gateway"]),
            "PYTAKE_AUTH_URL": urls["asgi"],  # the JWKS
            "PYTAKE_CONTACTS_URL": urls["asgi"],
            "PYTAKE_CONVERSATIONS_URL": urls["fastapi"],
            "PYTAKE_LOG_LEVEL": "WARNING",
            # No broker here: the revocation and organization replicas stay
            # empty, but are still consulted on every request.
            "PYTAKE_RUN_WORKERS": "false",
            # Spend from the organization's bucket on every request, never refuse.
            "PYTAKE_RATELIMIT_ORGANIZATION_PER_MINUTE": str(10**9),
        }
        processes["gateway"] = start(
            [sys.executable, "-m", "pytake_api_gateway", "serve"], gateway_env
        )
        for name, process in processes.items():
            wait_healthy(urls[name], process)
        for path in ("/v1/contacts", "/v1/conversations"):
            check = httpx.get(urls["gateway"] + path, headers=headers, timeout=10.0)
            if check.status_code != 200 or check.json() != json.loads(BODY):
                raise RuntimeError(f"gateway answered {check.status_code}: {check.text}")

        c, d = args.connections, args.duration
        print(
            f"api-gateway overhead, loopback, {os.cpu_count()} CPUs, load generator {generator}; "
            f"a {len(BODY)} B JSON answer; bearer token verified (cached), revocation "
            "checked and the organization's rate limit spent on every proxied request"
        )
        for kind, path, label in (
            ("asgi", "/v1/contacts", "bare ASGI upstream (worst case for the ratio)"),
            ("fastapi", "/v1/conversations", "FastAPI upstream (what every PyTake service is)"),
        ):
            pids = {"upstream": processes[kind].pid, "gateway": processes["gateway"].pid}
            compare(
                generator, label, urls[kind] + path, urls["gateway"] + path, headers, pids, c, d
            )
        if not args.no_clients:
            processes["gateway"].terminate()  # its CPU is not part of this comparison
            compare_clients(ports["asgi"], c, d / 2)
    finally:
        for process in reversed(processes.values()):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
