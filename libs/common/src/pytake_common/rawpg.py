"""Raw asyncpg on a service's own connection pool, for the hot paths.

A :meth:`~pytake_common.db.Database.transaction` costs about 1.2 ms of CPU in
session, greenlet and ORM result layers, and each SQLAlchemy Core statement
built per call another 0.2-0.5 ms; the same statements written as SQL text on
the asyncpg connection cost tens of microseconds. Two ways in, same isolation:

* :func:`driver` / :func:`connection_driver`: the asyncpg connection under a
  SQLAlchemy session or connection, for hot statements inside a transaction
  SQLAlchemy begins, binds to its tenant and commits (whatsapp-gateway's send
  path, the event consumer's batch bindings);
* :func:`transaction`: a transaction of its own on a pooled connection (auth's
  login and throttle), where


- the connection comes from the ``Database``'s pool, so it runs under the
  application role set at connect (row-level security applies) and is closed
  with the rest at shutdown;
- the transaction is bound like a ``Database`` transaction, in the round trip of
  ``BEGIN``: ``pytake.organization_id`` and ``pytake.bypass_rls`` transaction-locally;
- a transaction that did not commit is rolled back before the connection goes
  back to the pool, and a connection that cannot be rolled back (e.g. cancelled
  mid-query) is closed and replaced.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.pool import PoolProxiedConnection

from pytake_common.db import BYPASS_SETTING, ORG_SETTING, Database


async def driver(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection of ``session``'s transaction (begun, tenant bound, if not yet)."""
    return await connection_driver(await session.connection())


async def connection_driver(connection: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection of ``connection`` (no transaction begun)."""
    raw = await connection.get_raw_connection()
    return cast(asyncpg.Connection, raw.driver_connection)


class RolledBack(Exception):
    """A transaction's block ended normally but the transaction could not commit."""


def begin_sql(organization_id: uuid.UUID | None, *, bypass_rls: bool, durable: bool = True) -> str:
    """``BEGIN`` and the tenant binding as one simple query (no parameters, one round trip)."""
    org = str(uuid.UUID(str(organization_id))) if organization_id else ""  # validated: in text
    bypass = "on" if bypass_rls else "off"
    sql = (
        f"BEGIN; SELECT set_config('{ORG_SETTING}', '{org}', true), "
        f"set_config('{BYPASS_SETTING}', '{bypass}', true)"
    )
    return sql if durable else sql + ", set_config('synchronous_commit', 'off', true)"


@asynccontextmanager
async def transaction(
    db: Database,
    organization_id: uuid.UUID | None = None,
    *,
    bypass_rls: bool = False,
    durable: bool = True,
) -> AsyncIterator[asyncpg.Connection]:
    """An asyncpg connection inside a transaction bound like ``db.transaction(...)``:
    committed when the block ends, rolled back when it raises.

    ``durable=False`` commits without waiting for the WAL flush (``synchronous_commit``
    off for this transaction only): for writes whose loss in a database crash harms
    nothing, it saves the flush's wait (milliseconds on real disks) and most of the
    commit's CPU. The transaction is visible at once, atomic, and made durable by the
    WAL writer within a fraction of a second, or by the next durable commit: a later
    transaction that depends on it never outlives it.
    """
    begin = begin_sql(organization_id, bypass_rls=bypass_rls, durable=durable)
    async with db.engine.connect() as pooled:
        proxied = await pooled.get_raw_connection()
        conn: asyncpg.Connection = proxied.driver_connection
        committed = False
        try:
            await conn.execute(begin)
            yield conn
            # A statement that failed inside the block (its error caught there) left the
            # transaction aborted: COMMIT then rolls back, and says so only in its tag.
            if await conn.execute("COMMIT") != "COMMIT":
                raise RolledBack("the transaction had failed: it was rolled back")
            committed = True
        finally:
            if not committed:
                await _abandon(conn, proxied)


async def _abandon(conn: asyncpg.Connection, proxied: PoolProxiedConnection) -> None:
    """End a transaction that did not commit; the error that got here propagates."""
    if conn.is_closed() or not conn.is_in_transaction():
        # Lost midway, or not known to be in a transaction: an error or a cancellation
        # that cut the BEGIN (and its bypass setting) short can leave the server in a
        # transaction the driver has not seen. Either way the pool must not hand it out.
        _drop(conn, proxied)
        return
    try:
        await conn.execute("ROLLBACK")
    except Exception:
        _drop(conn, proxied)  # e.g. the server is gone
        return
    except BaseException:
        _drop(conn, proxied)  # cancelled while rolling back
        raise
    if conn.is_closed():
        _drop(conn, proxied)


def _drop(conn: asyncpg.Connection, proxied: PoolProxiedConnection) -> None:
    """Close the connection now and have the pool open a new one instead of handing
    this one out again (a soft invalidation: closing it through the pool would need
    SQLAlchemy's greenlet)."""
    conn.terminate()
    proxied.invalidate(soft=True)
