"""Every service's copy of auth's users has the one shape pytake_common.auth_users declares.

Each service migrates its own database; this migrates them all and compares the table
its migrations build with the one the shared declaration builds (the libs/common
fixture schema creates it from :func:`~pytake_common.auth_users.users_table`).
"""

from pathlib import Path

import asyncpg
import pytest

import pytake_contacts
import pytake_conversations
import pytake_tenants
from pytake_devstack.pytest_plugin import migrated_database

ROOT = Path(__file__).resolve().parents[2]
DECLARED = ("common", ROOT / "libs/common/tests/fixture_migrations", "users")
SERVICES = [
    ("contacts", Path(pytake_contacts.__file__).parent / "migrations", "users"),
    ("conversations", Path(pytake_conversations.__file__).parent / "migrations", "user_replicas"),
    ("tenants", Path(pytake_tenants.__file__).parent / "migrations", "users"),
]
#: Columns of the old shape kept until no pod reads them (expand, deploy, contract).
AWAITING_CONTRACT = {"conversations": {"deleted", "version_at"}}


async def _shape(pg_url: str, service: str, migrations: Path, table: str) -> dict:
    url = await migrated_database(pg_url, service, migrations)
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        columns = {
            r["column_name"]: (
                r["data_type"],
                r["character_maximum_length"],
                r["is_nullable"],
                r["column_default"],
            )
            for r in await conn.fetch(
                "SELECT column_name, data_type, character_maximum_length, is_nullable,"
                " column_default FROM information_schema.columns WHERE table_name = $1",
                table,
            )
        }
        indexes = {
            r["indexdef"].split(" USING ", 1)[1]
            for r in await conn.fetch(
                "SELECT indexdef FROM pg_indexes WHERE tablename = $1 AND indexname = $2",
                table,
                f"ix_{table}_organization_id",
            )
        }
        rls = await conn.fetchval(
            "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE relname = $1",
            table,
        )
    finally:
        await conn.close()
    return {"columns": columns, "indexes": indexes, "rls": rls}


@pytest.mark.parametrize(("service", "migrations", "table"), SERVICES)
async def test_each_service_keeps_auth_users_in_the_shared_shape(
    pg_url, service, migrations, table
):
    declared = await _shape(pg_url, *DECLARED)
    built = await _shape(pg_url, service, migrations, table)
    legacy = AWAITING_CONTRACT.get(service, set())
    assert {k: v for k, v in built["columns"].items() if k not in legacy} == declared["columns"]
    assert built["indexes"] == declared["indexes"] == {"btree (organization_id)"}
    assert built["rls"] is True
