from pathlib import Path

import pytest

import pytake_integrations
from pytake_devstack.pytest_plugin import migrated_database, service_app_fixtures
from pytake_integrations.app import create_app
from pytake_integrations.config import Settings

MIGRATIONS = Path(pytake_integrations.__file__).parent / "migrations"


@pytest.fixture
async def settings(pg_url, kafka_bootstrap):
    url = await migrated_database(pg_url, "integrations", MIGRATIONS)
    return Settings(
        own_database_url=url,
        kafka_bootstrap=kafka_bootstrap,
        env="test",
        run_workers=False,
        consumer_max_attempts=1,
        # Receivers in these tests listen on loopback; test_ssrf turns this off.
        webhooks_allow_loopback=True,
        retry_base_s=0.05,
        retry_max_delay_s=0.2,
        delivery_timeout_s=2.0,
    )


app, tokens, client = service_app_fixtures(create_app, "integrations")
