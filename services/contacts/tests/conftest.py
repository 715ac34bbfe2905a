import uuid
from pathlib import Path

import pytest

import pytake_contacts
from pytake_contacts.app import create_app
from pytake_contacts.config import Settings
from pytake_devstack.pytest_plugin import (
    SERVICE_TEST_SETTINGS,
    migrated_database,
    service_app_fixtures,
)

MIGRATIONS = Path(pytake_contacts.__file__).parent / "migrations"


@pytest.fixture
async def settings(pg_url, kafka_bootstrap):
    url = await migrated_database(pg_url, "contacts", MIGRATIONS)
    return Settings(
        own_database_url=url,
        kafka_bootstrap=kafka_bootstrap,
        **SERVICE_TEST_SETTINGS,
    )


app, tokens, client = service_app_fixtures(create_app, "contacts")


@pytest.fixture
def org():
    return uuid.uuid4()


@pytest.fixture
def agent(tokens, org):
    return tokens.headers(organization_id=org, role="agent")


@pytest.fixture
def admin(tokens, org):
    return tokens.headers(organization_id=org, role="org_admin")
