from pathlib import Path

import httpx
import pytest

import pytake_tenants
from pytake_devstack.pytest_plugin import migrated_database
from pytake_devstack.tokens import TokenFactory
from pytake_tenants.app import create_app
from pytake_tenants.config import Settings

MIGRATIONS = Path(pytake_tenants.__file__).parent / "migrations"


@pytest.fixture
async def settings(pg_url, kafka_bootstrap):
    url = await migrated_database(pg_url, "tenants", MIGRATIONS)
    return Settings(
        own_database_url=url,
        kafka_bootstrap=kafka_bootstrap,
        env="test",
        run_workers=False,
        consumer_max_attempts=1,
    )


@pytest.fixture
async def app(settings):
    application = create_app(settings)
    yield application
    await application.state.db.dispose()


@pytest.fixture
def tokens(app):
    factory = TokenFactory()
    factory.install(app)
    return factory


@pytest.fixture
async def client(app):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tenants"
    ) as c:
        yield c
