import asyncio
import contextlib
import uuid

import asyncpg
import pytest

from pytake_common import pgtenant
from pytake_common import rawpg as pg
from pytake_common.pgtenant import asyncpg_dsn

SETTINGS = (
    "SELECT current_user, current_setting('pytake.organization_id', true),"
    " current_setting('pytake.bypass_rls', true), current_setting('synchronous_commit')"
)
ADD_USER = (
    "INSERT INTO users (id, organization_id, email, password_hash, full_name, role)"
    " VALUES ($1, $2, $3, 'x', 'n', 'agent')"
)


async def test_a_raw_transaction_is_bound_like_a_database_transaction(app):
    db, org = app.state.db, uuid.uuid4()
    async with pg.transaction(db, org) as conn:
        assert tuple(await conn.fetchrow(SETTINGS)) == ("pytake_app", str(org), "off", "on")
    async with pg.transaction(db, bypass_rls=True, durable=False) as conn:
        assert tuple(await conn.fetchrow(SETTINGS)) == ("pytake_app", "", "on", "off")
    # Transaction-local: the pooled connections keep nothing of it.
    async with db.engine.connect() as pooled:
        conn = (await pooled.get_raw_connection()).driver_connection
        user, bound, bypass, sync = await conn.fetchrow(SETTINGS)
        assert (user, bound or "", bypass or "", sync) == ("pytake_app", "", "", "on")


async def test_row_level_security_applies(app):
    db, mine, theirs = app.state.db, uuid.uuid4(), uuid.uuid4()
    user = uuid.uuid4()
    async with pg.transaction(db, mine) as conn:
        await conn.execute(ADD_USER, user, mine, f"{user}@example.com")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # WITH CHECK
        async with pg.transaction(db, mine) as conn:
            await conn.execute(ADD_USER, uuid.uuid4(), theirs, "other@example.com")
    find = "SELECT id FROM users WHERE id = $1"
    async with pg.transaction(db, theirs) as conn:
        assert await conn.fetchval(find, user) is None
    async with pg.transaction(db) as conn:  # no tenant, no bypass: nothing
        assert await conn.fetchval(find, user) is None
    async with pg.transaction(db, mine) as conn:
        assert await conn.fetchval(find, user) == user
    async with pg.transaction(db, bypass_rls=True) as conn:
        assert await conn.fetchval(find, user) == user


async def test_an_error_rolls_back_and_the_connection_stays_usable(app):
    db, org = app.state.db, uuid.uuid4()

    async def handler_fails() -> None:
        async with pg.transaction(db, org) as conn:
            await conn.execute(ADD_USER, uuid.uuid4(), org, "first@example.com")
            raise RuntimeError("the handler failed")

    async def statement_fails() -> None:
        async with pg.transaction(db, org) as conn:
            await conn.execute(ADD_USER, uuid.uuid4(), org, "same@example.com")
            await conn.execute(ADD_USER, uuid.uuid4(), org, "same@example.com")

    async def error_caught_inside() -> None:
        async with pg.transaction(db, org) as conn:
            await conn.execute(ADD_USER, uuid.uuid4(), org, "once@example.com")
            with contextlib.suppress(asyncpg.UniqueViolationError):
                await conn.execute(ADD_USER, uuid.uuid4(), org, "once@example.com")

    with pytest.raises(RuntimeError):
        await handler_fails()
    with pytest.raises(asyncpg.UniqueViolationError):
        await statement_fails()
    # An error caught inside the block does not pass for a commit.
    with pytest.raises(pg.RolledBack):
        await error_caught_inside()
    async with pg.transaction(db, org) as conn:
        assert not await conn.fetchval("SELECT count(*) FROM users")
        assert await conn.fetchval("SELECT 1") == 1


async def test_a_query_cancelled_midway_is_rolled_back(app):
    db = app.state.db

    async def slow() -> None:
        async with pg.transaction(db) as conn:
            await conn.execute("SELECT pg_sleep(30)")

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Whatever connection the pool hands out next is healthy and outside any transaction.
    for _ in range(3):
        async with pg.transaction(db) as conn:
            assert await conn.fetchval("SELECT 1") == 1


async def test_a_connection_lost_midway_is_replaced(app, database_url, monkeypatch):
    db = app.state.db
    dropped: list[asyncpg.Connection] = []
    discard = pgtenant.discard

    def recording(conn: asyncpg.Connection, forget: object) -> None:
        dropped.append(conn)
        discard(conn, forget)

    monkeypatch.setattr(pgtenant, "discard", recording)
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    killed: list[int] = []

    async def lose_the_connection() -> None:
        async with pg.transaction(db) as conn:
            killed.append(await conn.fetchval("SELECT pg_backend_pid()"))
            await admin.execute("SELECT pg_terminate_backend($1)", killed[0])
            await conn.fetchval("SELECT 1")

    try:
        with pytest.raises(
            (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
        ):
            await lose_the_connection()
    finally:
        await admin.close()
    assert len(dropped) == 1 and dropped[0].is_closed()
    for _ in range(3):  # the pool opens a new connection in its place
        async with pg.transaction(db) as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") != killed[0]
