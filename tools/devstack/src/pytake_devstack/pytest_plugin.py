"""Pytest fixtures giving every test suite the real parts: PostgreSQL and a Kafka broker.

Loaded for the whole repository (``-p pytake_devstack.pytest_plugin``). Real
servers named by ``PYTAKE_DATABASE_URL`` / ``PYTAKE_KAFKA_BOOTSTRAP`` are used
when set; otherwise an embedded PostgreSQL and a Tansu broker are started once
per test session.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytake_devstack.infra import EmbeddedPostgres, TansuBroker


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """Plain ``postgresql://`` URL of a server the tests may create databases on."""
    if url := os.environ.get("PYTAKE_DATABASE_URL"):
        yield url
        return
    root = Path(tempfile.mkdtemp(prefix="pytake-pg-"))
    server = EmbeddedPostgres(root)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


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
    from pytake_common.settings import to_asyncpg_url

    url = to_asyncpg_url(pg_url, database=unique_name(f"t_{service.replace('-', '_')}"))
    await asyncio.to_thread(upgrade, migrations_dir, url, "pytake_app")
    return url
