import contextlib
import uuid

import pytest
from sqlalchemy import text


async def _insert(db, org, body):
    async with db.transaction(organization_id=org) as s:
        await s.execute(
            text("INSERT INTO notes (id, organization_id, body) VALUES (:i, :o, :b)"),
            {"i": uuid.uuid4(), "o": org, "b": body},
        )


async def test_rows_of_another_organization_are_invisible(db):
    org_a, org_b = uuid.uuid4(), uuid.uuid4()
    await _insert(db, org_a, "a")
    await _insert(db, org_b, "b")
    async with db.transaction(organization_id=org_a) as s:
        bodies = (await s.execute(text("SELECT body FROM notes"))).scalars().all()
    assert bodies == ["a"]
    async with db.transaction() as s:  # no organization bound: nothing visible
        assert (await s.execute(text("SELECT count(*) FROM notes"))).scalar_one() == 0
    async with db.transaction(bypass_rls=True) as s:
        assert (await s.execute(text("SELECT count(*) FROM notes"))).scalar_one() == 2


async def test_writing_a_row_for_another_organization_is_refused(db):
    org_a, org_b = uuid.uuid4(), uuid.uuid4()
    with pytest.raises(Exception, match="row-level security"):
        async with db.transaction(organization_id=org_a) as s:
            await s.execute(
                text("INSERT INTO notes (id, organization_id, body) VALUES (:i, :o, 'x')"),
                {"i": uuid.uuid4(), "o": org_b},
            )


async def test_the_app_role_survives_a_first_transaction_that_rolls_back(db):
    from pytake_common.db import Database

    fresh = Database(db.url, app_role="pytake_app", pool_size=1)  # one new connection

    async def first_transaction_fails() -> None:
        async with fresh.transaction() as s:
            assert (await s.execute(text("SELECT current_user"))).scalar_one() == "pytake_app"
            raise RuntimeError("the first transaction fails")

    try:
        with pytest.raises(RuntimeError):
            await first_transaction_fails()
        async with fresh.transaction() as s:
            assert (await s.execute(text("SELECT current_user"))).scalar_one() == "pytake_app"
    finally:
        await fresh.dispose()


async def test_binding_survives_commit_within_one_session(db):
    org = uuid.uuid4()
    await _insert(db, org, "kept")
    async with db.session(organization_id=org) as s:
        await s.execute(text("SELECT 1"))
        await s.commit()
        count = (await s.execute(text("SELECT count(*) FROM notes"))).scalar_one()
    assert count == 1


async def test_a_transaction_is_bound_once_whatever_else_the_process_holds(db, monkeypatch):
    """One bind per transaction: not one per Database object, not again per savepoint
    (on asyncpg it rides in ``BEGIN``'s round trip, outside SQLAlchemy's execution)."""
    from sqlalchemy import event

    from pytake_common import db as db_module
    from pytake_common.db import Database

    other = Database(db.url, app_role="pytake_app", pool_size=1)
    binds: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        if "set_config" in statement:
            binds.append(statement)

    begin_raw = db_module._begin_raw

    def counted_begin(adapted, begin: str) -> None:
        count(None, None, begin)
        begin_raw(adapted, begin)

    monkeypatch.setattr(db_module, "_begin_raw", counted_begin)
    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        org = uuid.uuid4()
        async with db.transaction(organization_id=org) as s:
            async with s.begin_nested():
                seen = (
                    await s.execute(text("SELECT current_setting('pytake.organization_id')"))
                ).scalar_one()
        assert seen == str(org)
        assert len(binds) == 1
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
        await other.dispose()


async def test_tenant_writes_bind_commit_and_roll_back_like_a_database_transaction(db):
    from pytake_common.rawpg import RolledBack, TenantWrites

    writes = TenantWrites(db.url, app_role="pytake_app", max_size=1)  # one connection
    org_a, org_b = uuid.uuid4(), uuid.uuid4()
    insert = "INSERT INTO notes (id, organization_id, body) VALUES ($1, $2, $3)"

    async def write(row_org: uuid.UUID, body: str, then=None) -> None:
        async with writes.transaction(org_a) as conn:
            assert await conn.fetchval("SELECT current_user") == "pytake_app"
            await conn.execute(insert, uuid.uuid4(), row_org, body)
            if then is not None:
                await then(conn)

    async def fails(conn) -> None:
        raise RuntimeError("the block fails")

    async def aborts(conn) -> None:
        with contextlib.suppress(Exception):
            await conn.execute("SELECT 1 / 0")  # caught: the transaction is aborted

    try:
        await write(org_a, "kept")
        with pytest.raises(Exception, match="row-level security"):
            await write(org_b, "another tenant's")
        with pytest.raises(RuntimeError):
            await write(org_a, "rolled back", fails)
        with pytest.raises(RolledBack):
            await write(org_a, "aborted", aborts)
        async with writes.transaction(org_b) as conn:  # the pool's connection, rebound
            assert await conn.fetchval("SELECT count(*) FROM notes") == 0
    finally:
        await writes.close()
    async with db.transaction(organization_id=org_a) as s:
        bodies = (await s.execute(text("SELECT body FROM notes"))).scalars().all()
    assert bodies == ["kept"]


async def test_tenant_writes_one_statement_binds_once_and_keeps_rls(db):
    """``TenantWrites.statement``: a connection bound for its session, each statement a
    transaction of its own: bound once per organization, RLS WITH CHECK applies, a
    failed statement leaves nothing and the connection goes on serving."""
    from pytake_common.rawpg import TenantWrites

    writes = TenantWrites(db.url, app_role="pytake_app", max_size=1)  # one connection
    org_a, org_b = uuid.uuid4(), uuid.uuid4()
    insert = "INSERT INTO notes (id, organization_id, body) VALUES ($1, $2, $3)"
    try:
        async with writes.statement(org_a) as conn:
            assert not conn.is_in_transaction()
            await conn.execute(insert, uuid.uuid4(), org_a, "first")
            pid = conn.get_server_pid()
        async with writes.statement(org_a) as conn:  # still bound: no statement to bind
            assert conn.get_server_pid() == pid and conn.bound_organization() == str(org_a)
            await conn.execute(insert, uuid.uuid4(), org_a, "second")
        with pytest.raises(Exception, match="row-level security"):
            async with writes.statement(org_a) as conn:
                await conn.execute(insert, uuid.uuid4(), org_b, "another tenant's")
        with pytest.raises(Exception, match="division by zero"):
            async with writes.statement(org_a) as conn:
                # one statement, one transaction: the row it wrote goes with its failure
                await conn.execute(
                    "WITH w AS (INSERT INTO notes (id, organization_id, body) "
                    "VALUES ($1, $2, 'undone') RETURNING 1) SELECT 1 / (count(*) - 1) FROM w",
                    uuid.uuid4(),
                    org_a,
                )
        async with writes.statement(org_b) as conn:  # rebound to another organization
            assert await conn.fetchval("SELECT count(*) FROM notes") == 0
    finally:
        await writes.close()
    async with db.transaction(organization_id=org_a) as s:
        bodies = (await s.execute(text("SELECT body FROM notes ORDER BY body"))).scalars().all()
    assert bodies == ["first", "second"]
