from pathlib import Path

import httpx
import pytest

import pytake_conversations
from pytake_conversations.app import create_app
from pytake_conversations.config import Settings
from pytake_devstack.pytest_plugin import migrated_database
from pytake_devstack.tokens import TokenFactory

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
        env="test",
        run_workers=False,
        kafka_consumer_session_timeout_ms=6000,
        kafka_consumer_heartbeat_ms=500,
        consumer_max_attempts=3,
        consumer_retry_backoff_s=0.01,
    )


@pytest.fixture
async def app(settings):
    application = create_app(settings)
    yield application
    await application.state.reads.close()
    await application.state.db.dispose()


@pytest.fixture
def tokens(app):
    factory = TokenFactory()
    factory.install(app)
    return factory


@pytest.fixture
async def client(app):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://conversations"
    ) as c:
        yield c
