"""Pytest fixtures giving every test suite the real parts: PostgreSQL and a Kafka broker.

Loaded for the whole repository (``-p pytake_devstack.pytest_plugin``). Real
servers named by ``PYTAKE_DATABASE_URL`` / ``PYTAKE_KAFKA_BOOTSTRAP`` are used
when set; otherwise an embedded PostgreSQL and a Tansu broker are started once
per test session.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from pytake_devstack.infra import EmbeddedPostgres, TansuBroker
from pytake_devstack.tokens import TokenFactory

#: A test's teardown longer than this is reported, fixture by fixture, at the end
#: of the run and as it happens: the last test's teardown also closes the
#: session's fixtures (the stack, the broker, PostgreSQL, the event loop and the
#: tasks earlier tests left on it), where a hang shows only as a timeout.
SLOW_TEARDOWN_S = float(os.environ.get("PYTAKE_SLOW_TEARDOWN_S", "10"))

_teardown_marks: list[tuple[str, float]] = []
_slow_teardowns: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    _teardown_marks.clear()
    _teardown_marks.append(("(start)", time.monotonic()))
    try:
        yield
    finally:
        took = time.monotonic() - _teardown_marks[0][1]
        if took >= SLOW_TEARDOWN_S:
            steps = [
                f"{name} {end - start:.1f}s"
                for (_, start), (name, end) in itertools.pairwise(_teardown_marks)
                if end - start >= 0.5
            ]
            line = f"{item.nodeid}: teardown {took:.1f}s ({', '.join(steps) or 'no fixture'})"
            _slow_teardowns.append(line)
            plugins = item.config.pluginmanager
            reporter = plugins.get_plugin("terminalreporter")
            capture = plugins.get_plugin("capturemanager")
            if reporter is not None and capture is not None:
                with capture.global_and_fixture_disabled():  # seen even if the run dies later
                    reporter.write_line(f"\nslow teardown: {line}")
        _teardown_marks.clear()


def pytest_fixture_post_finalizer(fixturedef: Any, request: Any) -> None:
    if _teardown_marks:
        _teardown_marks.append((fixturedef.argname, time.monotonic()))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _slow_teardowns:
        terminalreporter.section(f"teardowns over {SLOW_TEARDOWN_S:.0f}s")
        for line in _slow_teardowns:
            terminalreporter.write_line(line)


def discard_later(path: Path) -> None:
    """Delete ``path`` in a process of its own that outlives the test run: unlinking the
    suite's PostgreSQL files took 20 s of the last test's teardown."""
    subprocess.Popen(
        ["rm", "-rf", "--", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """Plain ``postgresql://`` URL of a server the tests may create databases on."""
    if url := os.environ.get("PYTAKE_DATABASE_URL"):
        yield url
        return
    root = Path(tempfile.mkdtemp(prefix="pytake-pg-"))
    server = EmbeddedPostgres(root, durable=False)
    url = server.start()
    try:
        yield url
    finally:
        server.stop(discard=True)
        discard_later(root)  # every test database: 1-3 GB, a million-odd files


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    if bootstrap := os.environ.get("PYTAKE_KAFKA_BOOTSTRAP"):
        yield bootstrap
        return
    broker = TansuBroker()
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def unique_topic_suffix() -> str:
    return uuid.uuid4().hex[:8]


async def migrated_database(pg_url: str, service: str, migrations_dir: Path) -> str:
    """Create a fresh database for ``service`` and apply its migrations; return its async URL."""
    from pytake_common.migrations import upgrade
    from pytake_common.pgtenant import to_asyncpg_url

    url = to_asyncpg_url(pg_url, database=unique_name(f"t_{service.replace('-', '_')}"))
    await asyncio.to_thread(upgrade, migrations_dir, url, "pytake_app")
    return url


#: What a service's own tests run with: no background workers, short consumer
#: timeouts and retries (tests call handlers and relays themselves).
SERVICE_TEST_SETTINGS: dict[str, Any] = {
    "env": "test",
    "run_workers": False,
    "kafka_consumer_session_timeout_ms": 6000,
    "kafka_consumer_heartbeat_ms": 500,
    "consumer_max_attempts": 3,
    "consumer_retry_backoff_s": 0.01,
}


def service_app_fixtures(create_app: Callable[[Any], FastAPI], host: str) -> tuple[Any, Any, Any]:
    """The ``app``, ``tokens`` and ``client`` fixtures of a service's test suite.

    ``app`` is built from the suite's own ``settings`` fixture and closed after
    the test (its database pool and, when it has one, its read pool); ``tokens``
    is a :class:`~pytake_devstack.tokens.TokenFactory` whose keys the app trusts;
    ``client`` talks to the app in-process over ASGI at ``http://<host>``.
    Assign them in the suite's conftest: ``app, tokens, client = service_app_fixtures(...)``.
    """

    @pytest.fixture(name="app")
    async def app_fixture(settings: Any) -> AsyncIterator[FastAPI]:
        application = create_app(settings)
        yield application
        reads = getattr(application.state, "reads", None)
        if reads is not None:
            await reads.close()
        await application.state.db.dispose()

    @pytest.fixture(name="tokens")
    def tokens_fixture(app: FastAPI) -> TokenFactory:
        factory = TokenFactory()
        factory.install(app)
        return factory

    @pytest.fixture(name="client")
    async def client_fixture(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as c:
            yield c

    return app_fixture, tokens_fixture, client_fixture


def service_suite(
    package: ModuleType,
    create_app: Callable[[Any], FastAPI],
    settings_class: Callable[..., Any],
    host: str,
    *,
    shared_database: bool = False,
    **overrides: Any,
) -> tuple[Any, Any, Any, Any, Any]:
    """Every fixture a service's suite needs, in one call from its conftest.

    ``database_url`` is a database migrated with the package's own chain: a fresh one per
    test, or one for the whole session with ``shared_database`` (when every test works in an
    organization of its own); ``settings`` is ``settings_class`` on it and on the broker with
    :data:`SERVICE_TEST_SETTINGS` and ``overrides``; then ``app``, ``tokens`` and ``client``
    as :func:`service_app_fixtures` makes them. In the conftest::

        database_url, settings, app, tokens, client = service_suite(
            pytake_contacts, create_app, Settings, "contacts"
        )
    """
    migrations = Path(str(package.__file__)).parent / "migrations"

    @pytest.fixture(name="database_url", scope="session" if shared_database else "function")
    async def database_url_fixture(pg_url: str) -> str:
        return await migrated_database(pg_url, host, migrations)

    @pytest.fixture(name="settings")
    async def settings_fixture(database_url: str, kafka_bootstrap: str) -> Any:
        values = {**SERVICE_TEST_SETTINGS, **overrides}
        return settings_class(
            own_database_url=database_url, kafka_bootstrap=kafka_bootstrap, **values
        )

    return (database_url_fixture, settings_fixture, *service_app_fixtures(create_app, host))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "unit: a pure rule, tested without PostgreSQL, Kafka or HTTP (any tests/unit/ folder)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under a ``tests/unit/`` folder is a unit test: ``pytest -m unit`` runs them."""
    for item in items:
        if item.path.parent.name == "unit":
            item.add_marker(pytest.mark.unit)
