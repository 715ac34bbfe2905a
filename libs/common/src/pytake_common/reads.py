"""A light read-only path for hot list endpoints: raw asyncpg, still tenant-bound.

A :class:`~pytake_common.db.Database` transaction costs about 1.2 ms of CPU
(session, greenlet, ORM result layers) against about 0.1 ms for the query
itself on asyncpg. :class:`TenantReads` keeps a small asyncpg pool of its own
for the few read endpoints that dominate traffic, with the same isolation:

- every connection runs ``SET ROLE <app role>`` when it is opened (the role
  ``RESET ALL`` leaves alone), so the row-level-security policies apply, and
  is read-only by default (``default_transaction_read_only``);
- :meth:`TenantReads.connection` (and :meth:`TenantReads.fetch`) binds the
  connection to the organization for the session (``pytake.organization_id``,
  ``pytake.bypass_rls`` off) before handing it out. The connection remembers
  the organization it is bound to, so a read for the same organization as the
  connection's last one is a single round trip (the query) instead of three
  (``BEGIN`` + settings, the query, ``COMMIT``). The binding is forgotten
  *before* it is changed and recorded only once the server confirmed it, so a
  bind that failed or was cancelled half-way is redone on the next read, never
  trusted;
- :meth:`TenantReads.transaction` runs a ``READ ONLY`` transaction that first
  sets the organization (and any extra settings) transaction-locally, in the
  same round trip as ``BEGIN``, for reads that need settings or one snapshot;
- a connection whose transaction did not end cleanly is rolled back, or
  closed when it cannot be, before it goes back to the pool.

Statements run outside an explicit transaction in PostgreSQL's default READ
COMMITTED, where every statement takes its own snapshot anyway: several reads
on one :meth:`~TenantReads.connection` see what they would have seen in one
READ COMMITTED transaction.

Use it for reads only; anything that writes keeps using ``Database``. The
session-level binding needs a direct connection or a session-mode pooler: behind
a transaction-mode pooler (PgBouncer) consecutive statements may reach different
server connections, bound to other organizations (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from asyncpg import Record

from pytake_common.db import BYPASS_SETTING, ORG_SETTING


def quote_literal(value: str) -> str:
    """``value`` as an SQL string literal (standard_conforming_strings is on)."""
    if "\x00" in value:
        raise ValueError("NUL in an SQL literal")
    return "'" + value.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy ``postgresql+asyncpg://`` URL as a DSN asyncpg understands."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("not a database URL")
    return "postgresql://" + rest if scheme.startswith("postgresql") else url


#: binds a pool connection to an organization for the session (``$1``: the id)
BIND_SQL = (
    f"SELECT set_config({quote_literal(ORG_SETTING)}, $1, false),"
    f" set_config({quote_literal(BYPASS_SETTING)}, 'off', false)"
)


class ReadConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped
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


class TenantReads:
    """Tenant-bound read-only reads on a small asyncpg pool (opened lazily)."""

    def __init__(
        self,
        url: str,
        *,
        app_role: str | None = None,
        min_size: int = 1,
        max_size: int = READ_POOL_SIZE,
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self._app_role = app_role
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        # First come, first served: asyncpg's pool hands a released connection to
        # whichever task asks next, and a woken waiter that finds it taken queues
        # again at the back (asyncio.Queue), so under load some reads waited many
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
        # Transactions are always ended by transaction(); the default reset query
        # (RESET ALL, UNLISTEN, ...) would only add a round trip per read, and would
        # undo the organization binding that connection() keeps track of.
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
                connection_class=ReadConnection,
                server_settings={"default_transaction_read_only": "on"},
            )
            if self._pool is None:
                self._pool = pool
            else:  # another task opened one meanwhile
                await pool.close()
        return self._pool

    @staticmethod
    def begin_sql(organization_id: uuid.UUID | str, settings: Mapping[str, str]) -> str:
        org = str(uuid.UUID(str(organization_id)))  # validated: it goes into the text
        configs = [(ORG_SETTING, org), (BYPASS_SETTING, "off"), *settings.items()]
        calls = ", ".join(
            f"set_config({quote_literal(k)}, {quote_literal(v)}, true)" for k, v in configs
        )
        return f"BEGIN READ ONLY; SELECT {calls}"

    @asynccontextmanager
    async def connection(
        self, organization_id: uuid.UUID | str
    ) -> AsyncIterator[asyncpg.Connection]:
        """A pool connection bound to ``organization_id``: each statement on it is
        its own read-only transaction (see the module's docstring)."""
        org = str(uuid.UUID(str(organization_id)))
        pool = await self.pool()
        async with self._turns, pool.acquire() as conn:
            try:
                if conn.bound_organization() != org:
                    conn.set_bound_organization(None)  # unknown until the server confirms
                    await conn.fetchval(BIND_SQL, org)
                    conn.set_bound_organization(org)
                yield conn
            except BaseException:
                # A statement cut off half-way (cancelled, timed out) leaves the session
                # in a state not worth reasoning about: bind again next time.
                conn.set_bound_organization(None)
                if not conn.is_closed() and conn.is_in_transaction():
                    await self._abandon(conn)
                raise

    @asynccontextmanager
    async def transaction(
        self, organization_id: uuid.UUID | str, settings: Mapping[str, str] | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a read-only transaction bound to ``organization_id``.

        ``settings`` are more transaction-local settings (e.g. a pg_trgm threshold).
        """
        begin = self.begin_sql(organization_id, settings or {})
        pool = await self.pool()
        async with self._turns, pool.acquire() as conn:
            done = False
            try:
                await conn.execute(begin)
                yield conn
                await conn.execute("COMMIT")
                done = True
            finally:
                if not done:
                    await self._abandon(conn)

    @staticmethod
    async def _abandon(conn: asyncpg.Connection) -> None:
        """End a transaction that did not commit; the error that got here propagates."""
        try:
            if not conn.is_closed() and conn.is_in_transaction():
                await conn.execute("ROLLBACK")
        except Exception:  # e.g. cancelled mid-query: drop it, the pool opens another
            conn.terminate()
        except BaseException:
            conn.terminate()
            raise

    async def fetch(self, organization_id: uuid.UUID | str, sql: str, *args: Any) -> list[Record]:
        """Rows of one query for ``organization_id`` (one round trip when the pool
        connection is already bound to it)."""
        async with self.connection(organization_id) as conn:
            rows: list[Record] = await conn.fetch(sql, *args)
            return rows

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
