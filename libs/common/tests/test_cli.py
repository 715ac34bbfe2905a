"""``run_cli serve`` runs uvicorn with the keep-alive the settings ask for.

An Ingress keeps idle upstream connections for 60 s; uvicorn's own default (5 s)
closes them first, and a POST written onto a connection the server is closing
fails with a 502. The server here is the real ``run_cli`` in a child process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from pytake_common import cli
from pytake_common.settings import ServiceSettings

SERVER = """
from fastapi import FastAPI
from pytake_common.cli import run_cli
from pytake_common.settings import ServiceSettings

def app_factory(settings):
    app = FastAPI()

    @app.get("/ping")
    def ping():
        return {"ok": True}

    @app.get("/nice")
    def nice():
        import os

        return {"nice": os.getpriority(os.PRIO_PROCESS, 0)}

    return app

run_cli(["serve"], settings_factory=ServiceSettings, app_factory=app_factory, migrations_dir=None)
"""

#: ingress-nginx's default ``upstream-keepalive-timeout``.
INGRESS_UPSTREAM_KEEPALIVE_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(tmp_path, **env: str) -> Iterator[int]:
    port = free_port()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTAKE_")}
    child_env |= {
        "PYTAKE_ENV": "test",
        "PYTAKE_STATE_DIR": str(tmp_path),
        "PYTAKE_PORT": str(port),
        "PYTAKE_LOG_LEVEL": "WARNING",
        **env,
    }
    process = subprocess.Popen([sys.executable, "-c", SERVER], env=child_env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def ping(conn: socket.socket) -> bytes:
    conn.sendall(b"GET /ping HTTP/1.1\r\nHost: test\r\n\r\n")
    data = b""
    while b'{"ok":true}' not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    return data


def is_closed(conn: socket.socket) -> bool:
    conn.settimeout(0.5)
    try:
        return conn.recv(1) == b""
    except TimeoutError:
        return False


def test_the_default_outlives_the_ingress_keepalive():
    assert ServiceSettings.model_fields["http_keepalive_s"].default > INGRESS_UPSTREAM_KEEPALIVE_S


def test_idle_connections_close_after_the_configured_keepalive(tmp_path):
    with serve(tmp_path, PYTAKE_HTTP_KEEPALIVE_S="1") as port:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            assert b"200 OK" in ping(conn)
            time.sleep(2)
            assert is_closed(conn), "uvicorn ignored PYTAKE_HTTP_KEEPALIVE_S"


@pytest.mark.timeout(60)
def test_by_default_a_connection_idle_past_uvicorns_5_s_still_serves(tmp_path):
    with serve(tmp_path) as port:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            assert b"200 OK" in ping(conn)
            time.sleep(6)
            assert not is_closed(conn)
            conn.settimeout(5)
            assert b"200 OK" in ping(conn)


def niceness(port: int) -> int:
    return int(httpx.get(f"http://127.0.0.1:{port}/nice", timeout=5).json()["nice"])


def test_serve_runs_at_the_niceness_it_is_given(tmp_path):
    with serve(tmp_path, PYTAKE_PROCESS_NICE="7") as port:
        assert niceness(port) == 7
    with serve(tmp_path) as port:
        assert niceness(port) == os.getpriority(os.PRIO_PROCESS, 0)


def test_a_niceness_refused_is_logged_and_the_process_runs_on(monkeypatch, caplog):
    def refuse(which: int, who: int, value: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(cli.os, "setpriority", refuse)
    with caplog.at_level("WARNING", logger=cli.__name__):
        assert cli.set_niceness(-10) is False
    (record,) = caplog.records
    assert record.process_nice == -10
    assert record.error == "Operation not permitted"
    assert "runs at niceness" in record.getMessage()


def test_a_niceness_outside_the_systems_range_is_refused_at_start():
    with pytest.raises(ValueError, match="process_nice"):
        ServiceSettings(process_nice=-21)
