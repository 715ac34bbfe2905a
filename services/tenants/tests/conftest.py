from pathlib import Path

import pytest

import pytake_tenants
from pytake_devstack.pytest_plugin import migrated_database, service_app_fixtures
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
        # Reads of a missing organization wait this long (pending.py); short for the
        # suite, the tests about the wait set their own.
        organization_wait_s=0.2,
    )


app, tokens, client = service_app_fixtures(create_app, "tenants")
