from pathlib import Path

import pytest

from pytake_common.db import Database
from pytake_devstack.pytest_plugin import migrated_database

MIGRATIONS = Path(__file__).parent / "fixture_migrations"


@pytest.fixture
async def db(pg_url: str):
    url = await migrated_database(pg_url, "common", MIGRATIONS)
    database = Database(url, app_role="pytake_app", pool_size=4)
    yield database
    await database.dispose()
