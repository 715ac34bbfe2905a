"""Raw asyncpg for the hot paths, tenant-bound like a ``Database`` transaction.

A :meth:`~pytake_common.db.Database.transaction` costs about 1.2 ms of CPU in
session, greenlet and ORM result layers, and each SQLAlchemy Core statement
built per call another 0.2-0.5 ms; the same statements written as SQL text on
the asyncpg connection cost tens of microseconds. The binding statements, and
giving up a connection whose state is not known, come from
:mod:`pytake_common.pgtenant`. Two halves:

**On the Database's pool** (reads and writes; connections run under the
application role set at connect, so row-level security applies, and are closed
with the rest at shutdown):

* :func:`driver` / :func:`connection_driver`: the asyncpg connection under a
  SQLAlchemy session or connection, for hot statements inside a transaction
  SQLAlchemy begins, binds to its tenant and commits (whatsapp-gateway's send
  path), or that the event consumer began itself (its handlers' sessions carry
  the connection: no session begins for it);
* :func:`transaction`: a transaction of its own (auth's login and throttle),
  bound in the round trip of ``BEGIN``; one that did not commit is rolled back
  before the connection goes back to the pool, and a connection that cannot be
  (e.g. cancelled mid-query) is closed and replaced.

**On a read pool of its own** (:class:`TenantReads`, for the few API read
endpoints that dominate traffic):

- every connection runs ``SET ROLE <app role>`` when it is opened (the role
  ``RESET ALL`` leaves alone), so the row-level-security policies apply, is
  read-only by default (``default_transaction_read_only``) and has the API read
  ``statement_timeout`` (a statement past it raises
  :class:`~pytake_common.errors.StatementTimeout`, answered 503);
- :meth:`TenantReads.connection` (and :meth:`TenantReads.fetch`) binds the
  connection to the organization for the session
  (:data:`~pytake_common.pgtenant.STAY_BOUND_SQL`) before handing it out. The
  connection remembers the organization it is bound to, so a read for the same
  organization as the connection's last one is a single round trip (the query)
  instead of three (``BEGIN`` + settings, the query, ``COMMIT``). The binding is
  forgotten *before* it is changed and recorded only once the server confirmed
  it, so a bind that failed or was cancelled half-way is redone on the next
  read, never trusted;
- :meth:`TenantReads.transaction` runs a ``READ ONLY`` transaction that first
  sets the organization (and any extra settings) transaction-locally, in the
  same round trip as ``BEGIN``, for reads that need settings or one snapshot;
- a connection whose transaction did not end cleanly is rolled back, or
  closed when it cannot be, before it goes back to the pool.

Statements run outside an explicit transaction in PostgreSQL's default READ
COMMITTED, where every statement takes its own snapshot anyway: several reads
on one :meth:`~TenantReads.connection` see what they would have seen in one
READ COMMITTED transaction. Use :class:`TenantReads` for reads only; anything
that writes uses the ``Database``. The session-level binding needs a direct
connection or a session-mode pooler: behind a transaction-mode pooler
(PgBouncer) consecutive statements may reach different server connections,
bound to other organizations (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import asyncpg
from asyncpg import Record
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from pytake_common.errors import StatementTimeout
from pytake_common.pgtenant import (
    STAY_BOUND_SQL,
    abandon,
    asyncpg_dsn,
    begin_sql,
    organization_text,
    quote_ident,
)

if TYPE_CHECKING:
    from pytake_common.db import Database
    from pytake_common.settings import ServiceSettings

# --- on the Database's pool ----------------------------------------------------------


#: ``session.info`` key of the asyncpg connection whose transaction (begun, tenant bound)
#: the session joins: the event consumer's handlers' sessions (see :func:`driver`).
DRIVER = "pytake_driver"

#: Run first in a transaction whose hot statements read a table that starts empty and
#: grows fast (a delivery queue, a campaign's recipients): plan each execution with its
#: parameters and the table as it is now. asyncpg prepares every statement, and after
#: five executions PostgreSQL may keep a generic plan made while the table was empty (a
#: scan of every row, or one per key: until autovacuum's ANALYZE replaces it). Planning
#: costs a few tenths of a millisecond a statement: for statements run once a batch.
CUSTOM_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"


async def driver(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection of ``session``'s transaction (begun, tenant bound, if not yet).

    An event consumer's session already has one (its batch's transaction, begun raw):
    it is returned without beginning the session."""
    conn: asyncpg.Connection | None = session.info.get(DRIVER)
    if conn is not None:
        return conn
    return await connection_driver(await session.connection())


async def connection_driver(connection: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection of ``connection`` (no transaction begun)."""
    raw = await connection.get_raw_connection()
    return cast(asyncpg.Connection, raw.driver_connection)


class RolledBack(Exception):
    """A transaction's block ended normally but the transaction could not commit."""


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
    begin = begin_sql(
        organization_id,
        bypass_rls=bypass_rls,
        settings=None if durable else {"synchronous_commit": "off"},
    )
    while True:
        async with db.engine.connect() as pooled:
            proxied = await pooled.get_raw_connection()
            if not await alive(pooled, proxied):
                continue  # closed by the server meanwhile: another one
            # soft: closing it through the pool would need SQLAlchemy's greenlet
            async with committed(
                proxied.driver_connection, begin, partial(proxied.invalidate, soft=True)
            ) as conn:
                yield conn
            return


async def checkout(db: Database) -> tuple[AsyncConnection, Any]:
    """A connection of ``db``'s pool and its raw (pool) connection, whose asyncpg
    connection is open (see :func:`alive`); the caller closes it."""
    while True:
        pooled = await db.engine.connect()
        try:
            proxied = await pooled.get_raw_connection()
            if await alive(pooled, proxied):
                return pooled, proxied
        except BaseException:
            await pooled.close()
            raise
        await pooled.close()


async def alive(pooled: AsyncConnection, proxied: Any) -> bool:
    """Whether the asyncpg connection of a pool checkout is open; if not, it is invalidated.

    The server closes the connections sitting in the pool when PostgreSQL restarts.
    SQLAlchemy notices only at a statement of its own (and then renews the whole pool);
    a raw statement fails with ``connection is closed``, and each try of a record or of
    a send would spend an attempt on the next such connection. A local check: no round
    trip."""
    if not proxied.driver_connection.is_closed():
        return True
    await pooled.invalidate()
    return False


@asynccontextmanager
async def committed(
    conn: asyncpg.Connection, begin: str, forget: Callable[[], object] | None = None
) -> AsyncIterator[asyncpg.Connection]:
    """Run ``begin`` on ``conn``, yield it, COMMIT; abandon it when that did not happen
    (``forget``: how its pool forgets it, when it has one)."""
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
            await abandon(conn, forget)


# --- on a read pool of its own -------------------------------------------------------


class BoundConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped
    """A pool connection that remembers which organization its session is bound to."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pytake_organization: str | None = None

    def bound_organization(self) -> str | None:
        return self._pytake_organization

    def set_bound_organization(self, organization: str | None) -> None:
        self._pytake_organization = organization


#: Reads in flight per process, by default. A service process is one event loop; its
#: reads queue for these connections (see pytake_contacts.app.LIST_READS for a service
#: whose reads are heavier in PostgreSQL than in Python).
READ_POOL_SIZE = 8


class _TenantPool:
    """A small asyncpg pool of tenant-bound connections (opened lazily): the
    application role set at connect, no reset query on release (transactions are
    always ended by their context managers), first come first served."""

    connection_class: type[asyncpg.Connection] = BoundConnection

    def __init__(
        self,
        url: str,
        *,
        app_role: str | None,
        min_size: int,
        max_size: int,
        server_settings: dict[str, str],
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self._app_role = app_role
        self._min_size = min_size
        self._max_size = max_size
        self._server_settings = server_settings
        self._pool: asyncpg.Pool | None = None
        # First come, first served: asyncpg's pool hands a released connection to
        # whichever task asks next, and a woken waiter that finds it taken queues
        # again at the back (asyncio.Queue), so under load some callers waited many
        # turns. asyncio.Semaphore lets no newcomer past its waiters.
        self._turns = asyncio.Semaphore(max_size)

    async def _init(self, conn: asyncpg.Connection) -> None:
        if self._app_role:
            await conn.execute(f"SET ROLE {quote_ident(self._app_role)}")
        for typename in ("json", "jsonb"):
            await conn.set_type_codec(
                typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )

    @staticmethod
    async def _reset(conn: asyncpg.Connection) -> None:
        # The default reset query (RESET ALL, UNLISTEN, ...) would only add a round trip
        # per use, and would undo the organization binding TenantReads keeps track of.
        if conn.is_in_transaction():
            await conn.execute("ROLLBACK")

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                init=self._init,
                reset=self._reset,
                connection_class=self.connection_class,
                server_settings=self._server_settings,
            )
            if self._pool is None:
                self._pool = pool
            else:  # another task opened one meanwhile
                await pool.close()
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @asynccontextmanager
    async def _bound(self, organization_id: uuid.UUID | str) -> AsyncIterator[asyncpg.Connection]:
        """A pool connection whose session is bound to ``organization_id`` (bound again
        only when its last binding was another organization's, or is not known)."""
        org = organization_text(organization_id)
        pool = await self.pool()
        async with self._turns, pool.acquire() as conn:
            try:
                if conn.bound_organization() != org:
                    conn.set_bound_organization(None)  # unknown until the server confirms
                    await conn.fetchval(STAY_BOUND_SQL, org)
                    conn.set_bound_organization(org)
                yield conn
            except BaseException:
                # A statement cut off half-way (cancelled, timed out) leaves the session
                # in a state not worth reasoning about: bind again next time.
                conn.set_bound_organization(None)
                await abandon(conn, began=False)
                raise


class TenantWrites(_TenantPool):
    """Tenant-bound write transactions on a small asyncpg pool of their own, for a
    hot write path (whatsapp-gateway's webhook intake): :func:`transaction` without
    SQLAlchemy's pool checkout, which costs more CPU than the transaction's round trips."""

    def __init__(self, url: str, *, app_role: str | None = None, max_size: int = 8) -> None:
        super().__init__(url, app_role=app_role, min_size=1, max_size=max_size, server_settings={})

    @asynccontextmanager
    async def transaction(self, organization_id: uuid.UUID) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a durable transaction bound to ``organization_id`` (RLS
        applies), as :func:`transaction`: committed when the block ends, rolled back
        when it raises, and a connection left in an unknown state is closed."""
        begin = begin_sql(organization_id)
        pool = await self.pool()
        async with self._turns, pool.acquire() as conn, committed(conn, begin, None):
            yield conn

    @asynccontextmanager
    async def statement(self, organization_id: uuid.UUID) -> AsyncIterator[asyncpg.Connection]:
        """A connection bound to ``organization_id`` for its session (RLS applies) with no
        transaction open: for a write that is ONE statement, which PostgreSQL runs as a
        transaction of its own (atomic, and durable at its commit like any other): one
        round trip instead of three (``BEGIN``, the statement, ``COMMIT``) when the
        connection was last bound to the same organization, two otherwise."""
        async with self._bound(organization_id) as conn:
            yield conn


class TenantReads(_TenantPool):
    """Tenant-bound read-only reads on a small asyncpg pool (opened lazily).

    ``statement_timeout_ms``: every statement's ``statement_timeout`` (None or 0: the
    server's); services pass ``settings.api_read_statement_timeout_ms``.
    """

    def __init__(
        self,
        url: str,
        *,
        app_role: str | None = None,
        min_size: int = 1,
        max_size: int = READ_POOL_SIZE,
        statement_timeout_ms: int | None = None,
    ) -> None:
        settings = {"default_transaction_read_only": "on"}
        if statement_timeout_ms:
            settings["statement_timeout"] = str(statement_timeout_ms)
        super().__init__(
            url,
            app_role=app_role,
            min_size=min_size,
            max_size=max_size,
            server_settings=settings,
        )

    @classmethod
    def of(cls, settings: ServiceSettings, *, max_size: int = READ_POOL_SIZE) -> TenantReads:
        """A service's API reads: its database, application role and read timeout."""
        return cls(
            settings.service_database_url(),
            app_role=settings.db_app_role,
            max_size=max_size,
            statement_timeout_ms=settings.api_read_statement_timeout_ms,
        )

    @asynccontextmanager
    async def connection(
        self, organization_id: uuid.UUID | str
    ) -> AsyncIterator[asyncpg.Connection]:
        """A pool connection bound to ``organization_id``: each statement on it is
        its own read-only transaction (see the module's docstring)."""
        try:
            async with self._bound(organization_id) as conn:
                yield conn
        except asyncpg.QueryCanceledError as exc:
            raise StatementTimeout() from exc

    @asynccontextmanager
    async def transaction(
        self, organization_id: uuid.UUID | str, settings: Mapping[str, str] | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a read-only transaction bound to ``organization_id``.

        ``settings`` are more transaction-local settings (e.g. a pg_trgm threshold).
        """
        begin = begin_sql(organization_id, read_only=True, settings=settings)
        pool = await self.pool()
        async with self._turns, pool.acquire() as conn:
            done = False
            try:
                await conn.execute(begin)
                yield conn
                await conn.execute("COMMIT")
                done = True
            except asyncpg.QueryCanceledError as exc:
                raise StatementTimeout() from exc
            finally:
                if not done:
                    await abandon(conn)

    async def fetch(self, organization_id: uuid.UUID | str, sql: str, *args: Any) -> list[Record]:
        """Rows of one query for ``organization_id`` (one round trip when the pool
        connection is already bound to it)."""
        async with self.connection(organization_id) as conn:
            rows: list[Record] = await conn.fetch(sql, *args)
            return rows
