"""What the platform is made of, and how to start it: one description, two launchers.

``make run`` hands :func:`processes` to honcho (a Procfile); the end-to-end tests
start the same processes with :class:`LocalStack` on free ports.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pytake_devstack.infra import free_port

DB_SERVICES = (
    "auth",
    "tenants",
    "contacts",
    "conversations",
    "whatsapp-gateway",
    "integrations",
    "automation",
    "campaigns",
)
DEFAULT_PORTS = {
    "api-gateway": 8000,
    "auth": 8001,
    "tenants": 8002,
    "contacts": 8003,
    "conversations": 8004,
    "whatsapp-gateway": 8005,
    "automation": 8007,
    "campaigns": 8006,
    "integrations": 8008,
    "meta-simulator": 8010,
}
DEV_THROTTLES = {
    "PYTAKE_THROTTLE_REGISTER_PER_ADDRESS": "[200, 3600]",
    "PYTAKE_THROTTLE_LOGIN_PER_ADDRESS": "[200, 60]",
    "PYTAKE_RATELIMIT_CLIENT_PER_MINUTE": "600",
}
UPSTREAM_ENV = {
    "auth": "PYTAKE_AUTH_URL",
    "tenants": "PYTAKE_TENANTS_URL",
    "contacts": "PYTAKE_CONTACTS_URL",
    "conversations": "PYTAKE_CONVERSATIONS_URL",
    "whatsapp-gateway": "PYTAKE_WHATSAPP_URL",
    "integrations": "PYTAKE_INTEGRATIONS_URL",
    "automation": "PYTAKE_AUTOMATION_URL",
    "campaigns": "PYTAKE_CAMPAIGNS_URL",
}


#: The processes started ahead of the rest of the machine's work (``PYTAKE_PROCESS_NICE``)
#: when the launcher may do so (root): whatsapp-gateway times each send to its throughput
#: slot within 10 ms, and on a laptop it shares every core with the whole platform. On 2
#: cores at a campaign's 80/s it missed 0.31-0.71 slots a send (each a slot of the number's
#: lost), 0.09-0.26 ahead of the rest: see docs/benchmarks.md.
AHEAD = {"whatsapp-gateway": "-10"}


def ahead_env(service: str) -> dict[str, str]:
    """The niceness for ``service`` (:data:`AHEAD`) if this process may grant it, unless
    the environment sets one."""
    nice = AHEAD.get(service)
    if nice is None or "PYTAKE_PROCESS_NICE" in os.environ or os.geteuid() != 0:
        return {}
    return {"PYTAKE_PROCESS_NICE": nice}


def module(service: str) -> str:
    return "pytake_" + service.replace("-", "_")


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class StackConfig:
    database_url: str
    kafka_bootstrap: str
    state_dir: Path
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    graph_api_base: str | None = None  # None: the simulator
    extra_env: dict[str, str] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def common_env(self) -> dict[str, str]:
        env = {
            "PYTAKE_ENV": os.environ.get("PYTAKE_ENV", "dev"),
            "PYTAKE_DATABASE_URL": self.database_url,
            "PYTAKE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "PYTAKE_STATE_DIR": str(self.state_dir),
            "PYTAKE_GRAPH_API_BASE": self.graph_api_base or self.url("meta-simulator"),
            "PYTAKE_AUTH_JWKS_URL": self.url("auth") + "/.well-known/jwks.json",
            "PYTAKE_GATEWAY_PORT": str(self.ports["api-gateway"]),
            "PYTHONUNBUFFERED": "1",
        }
        env.update({var: self.url(svc) for svc, var in UPSTREAM_ENV.items()})
        # On a laptop every client is 127.0.0.1: the production per-address limits
        # (5 sign-ups an hour) would stop a developer running `make demo` a few times.
        for var, value in DEV_THROTTLES.items():
            env[var] = os.environ.get(var, value)
        if env["PYTAKE_ENV"] != "prod":
            # integrations may deliver webhooks to a receiver on the laptop (http, loopback).
            env["PYTAKE_WEBHOOKS_ALLOW_LOOPBACK"] = "true"
        env.update(self.extra_env)
        return env


def processes(cfg: StackConfig) -> list[Process]:
    env = cfg.common_env()
    procs = []
    for service in (*DB_SERVICES, "api-gateway"):
        port = cfg.ports[service]
        procs.append(
            Process(
                service,
                [sys.executable, "-m", module(service), "serve"],
                {**ahead_env(service), **env, "PYTAKE_PORT": str(port)},
                port,
            )
        )
    sim_port = cfg.ports["meta-simulator"]
    procs.append(
        Process(
            "meta-simulator",
            [sys.executable, "-m", "pytake_meta_simulator"],
            {
                **env,
                "PYTAKE_SIMULATOR_PORT": str(sim_port),
                "PYTAKE_SIMULATOR_WEBHOOK_URL": cfg.url("api-gateway") + "/webhooks/whatsapp",
            },
            sim_port,
        )
    )
    return procs


def migrate_all(cfg: StackConfig) -> None:
    """Migrate every service's database, the services side by side (each one's own
    process: most of its time is Python starting, 3 s apiece one after another)."""
    env = {**os.environ, **cfg.common_env()}
    running = {
        service: subprocess.Popen(
            [sys.executable, "-m", module(service), "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for service in DB_SERVICES
    }
    failed = []
    for service, proc in running.items():
        out, _ = proc.communicate()
        sys.stdout.write(out.decode(errors="replace"))
        if proc.returncode != 0:
            failed.append(f"{service} (exit {proc.returncode})")
    if failed:
        raise RuntimeError("migrations failed: " + ", ".join(failed))


#: How long the stopped processes may take, all together, to finish their shutdown
#: (a service's own drain is bounded well under it) before they are killed.
STOP_GRACE_S = 20.0

#: How long a service may take to answer ready (imports, pools, the broker): a few
#: seconds on an idle box; a loaded one (CI beside other work) needs far more.
READY_TIMEOUT_S = float(os.environ.get("PYTAKE_STACK_READY_TIMEOUT_S", "180"))


def wait_ready(
    url: str,
    timeout: float = READY_TIMEOUT_S,
    path: str = "/readyz",
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until ``url + path`` answers 200; fail at once if ``process`` exits meanwhile."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            r = httpx.get(url + path, timeout=2.0)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise TimeoutError(f"{url}{path} not ready after {timeout}s: {last}")


class LocalStack:
    """Every service as a child process on free ports (end-to-end tests)."""

    def __init__(
        self,
        database_url: str,
        kafka_bootstrap: str,
        state_dir: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        ports = {name: free_port() for name in DEFAULT_PORTS}
        self.cfg = StackConfig(
            database_url, kafka_bootstrap, state_dir, ports, extra_env=extra_env or {}
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = state_dir / "logs"

    def start(self, ready_timeout: float = READY_TIMEOUT_S) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        migrate_all(self.cfg)
        for proc in processes(self.cfg):
            self.spawn(proc.name)
        for proc in processes(self.cfg):
            path = "/healthz" if proc.name == "meta-simulator" else "/readyz"
            wait_ready(proc.url, ready_timeout, path=path, process=self.procs[proc.name])

    def spawn(self, name: str) -> subprocess.Popen[bytes]:
        """Start process ``name`` (again, after :meth:`kill`), its output appended to its log."""
        proc = next(p for p in processes(self.cfg) if p.name == name)
        with open(self.logs / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                proc.argv, env={**os.environ, **proc.env}, stdout=log, stderr=subprocess.STDOUT
            )
        return self.procs[name]

    def kill(self, name: str) -> None:
        """SIGKILL process ``name`` (no shutdown code runs) and reap it."""
        process = self.procs[name]
        process.kill()
        process.wait()

    def url(self, service: str) -> str:
        return self.cfg.url(service)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM every process, then SIGKILL (and reap) whatever still runs after
        ``grace_s`` in all: one deadline, not one per process."""
        for p in self.procs.values():
            p.terminate()
        deadline = time.monotonic() + grace_s
        for p in self.procs.values():
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            with contextlib.suppress(OSError):
                out.append(f"--- {path.name}\n" + "\n".join(path.read_text().splitlines()[-lines:]))
        return "\n".join(out)
