"""The functions a migrated database runs are the readable sources under pytake_contacts/sql."""

import asyncio
import re
from pathlib import Path

import asyncpg
from alembic import command

import pytake_contacts
from pytake_common.migrations import alembic_config
from pytake_common.pgtenant import asyncpg_dsn
from pytake_devstack.pytest_plugin import migrated_database

PACKAGE = Path(pytake_contacts.__file__).parent
SOURCES = sorted((PACKAGE / "sql").glob("*.sql"))
MIGRATIONS = PACKAGE / "migrations"


def body(sql: str) -> str:
    match = re.search(r"\$fn\$(.*)\$fn\$", sql, re.DOTALL)
    assert match is not None, "a function source quotes its body with $fn$"
    return match.group(1)


async def test_the_live_functions_are_the_source_files(settings):
    conn = await asyncpg.connect(asyncpg_dsn(settings.own_database_url))
    try:
        for source in SOURCES:
            live = await conn.fetch(
                "SELECT prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = 'public' AND p.proname = $1",
                source.stem,
            )
            assert len(live) == 1, f"{source.stem}: {len(live)} functions by that name"
            assert live[0]["prosrc"] == body(source.read_text()), source.name
    finally:
        await conn.close()


async def test_search_migrations_go_down_and_up_again_to_the_same_functions(pg_url):
    """Each downgrade executes the copy the previous revision froze; back up is the source."""
    url = await migrated_database(pg_url, "contacts", MIGRATIONS)
    config = alembic_config(MIGRATIONS, url, "pytake_app")
    for revision in ("0008", "0005", "0004"):
        await asyncio.to_thread(command.downgrade, config, revision)
    await asyncio.to_thread(command.upgrade, config, "head")
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        for source in SOURCES:
            live = await conn.fetchval(
                "SELECT prosrc FROM pg_proc"
                " WHERE proname = $1 AND pronamespace = 'public'::regnamespace",
                source.stem,
            )
            assert live == body(source.read_text()), source.name
    finally:
        await conn.close()
