"""Alembic helpers: create the service database, run its chain, grant the app role.

Migrations run as a separate step (``python -m pytake_<svc> migrate``), never at
import or start-up.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from alembic import command, context
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import async_engine_from_config

from pytake_common.pgtenant import asyncpg_dsn


def frozen_sql(migration_file: str, name: str) -> str:
    """A database function's source as revision ``name``'s migration froze it.

    A service keeps each function it defines in PostgreSQL as a readable file under
    ``<package>/sql/<function>.sql``; the revision that creates or changes it freezes a
    copy as ``<package>/migrations/sql/<revision>_<function>.sql`` and executes that copy
    (its downgrade, the previous revision's). Editing the source therefore changes no
    migration, and a test fails until a new revision freezes the edit.
    """
    return (Path(migration_file).parent.parent / "sql" / f"{name}.sql").read_text()


async def ensure_database(url: str) -> None:
    """Create the database named in ``url`` if it does not exist (needs CREATEDB)."""
    target = make_url(url)
    conn = await asyncpg.connect(asyncpg_dsn(url, database="postgres"))
    try:
        exists = await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", target.database
        )
        if not exists:
            await conn.execute(f'CREATE DATABASE "{target.database}"')
    finally:
        await conn.close()


def grant_app_role(connection: Connection, role: str | None) -> None:
    """Create the non-owner application role and grant it DML only (RLS applies to it)."""
    if not role:
        return
    if not role.replace("_", "").isalnum():
        raise ValueError(f"application role name {role!r} must be alphanumeric/underscore")
    quoted = '"' + role.replace('"', '""') + '"'
    # Roles and memberships are the server's, not the database's: services migrated at
    # the same time (make run, or each service's migration job) race to create them,
    # and the loser's duplicate is what it wanted.
    raced = "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;"
    connection.exec_driver_sql(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "  # noqa: S608
        f"THEN CREATE ROLE {quoted} NOLOGIN; END IF; {raced} END $$"
    )
    # Membership lets the owner SET ROLE to it; where an operator (e.g. CloudNativePG)
    # pre-created the role and the membership, a non-superuser may not grant it again.
    connection.exec_driver_sql(
        f"DO $$ BEGIN IF NOT pg_has_role(current_user, '{role}', 'MEMBER') "
        f"THEN GRANT {quoted} TO CURRENT_USER; END IF; {raced} END $$"
    )
    connection.exec_driver_sql(f"GRANT USAGE ON SCHEMA public TO {quoted}")
    connection.exec_driver_sql(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}"
    )
    connection.exec_driver_sql(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {quoted}")


def alembic_config(migrations_dir: Path, url: str, app_role: str | None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["app_role"] = app_role
    return cfg


def revisions(migrations_dir: Path) -> tuple[str, ...]:
    """The revisions of a service's chain, oldest first (the last is the head)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    return tuple(reversed([r.revision for r in ScriptDirectory.from_config(cfg).walk_revisions()]))


def upgrade(migrations_dir: Path, url: str, app_role: str | None, revision: str = "head") -> None:
    asyncio.run(ensure_database(url))
    command.upgrade(alembic_config(migrations_dir, url, app_role), revision)


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's ``migrations/env.py`` (online, async engine)."""
    config = context.config

    def do_run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
            grant_app_role(connection, config.attributes.get("app_role"))

    async def run_async() -> None:
        engine = async_engine_from_config(
            config.get_section(config.config_ini_section, {}),
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
        )
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
        await engine.dispose()

    asyncio.run(run_async())
