from pathlib import Path

import pytest

import pytake_conversations
from pytake_conversations.app import create_app
from pytake_conversations.config import Settings
from pytake_devstack.pytest_plugin import (
    SERVICE_TEST_SETTINGS,
    migrated_database,
    service_app_fixtures,
)

MIGRATIONS = Path(pytake_conversations.__file__).parent / "migrations"


@pytest.fixture(scope="session")
async def database_url(pg_url):
    """One migrated database for the suite: every test works in its own organization."""
    return await migrated_database(pg_url, "conversations", MIGRATIONS)


@pytest.fixture
async def settings(database_url, kafka_bootstrap):
    return Settings(
        own_database_url=database_url,
        kafka_bootstrap=kafka_bootstrap,
        **SERVICE_TEST_SETTINGS,
    )


app, tokens, client = service_app_fixtures(create_app, "conversations")
