"""A light read-only path for hot list endpoints: raw asyncpg, still tenant-bound.

A :class:`~pytake_common.db.Database` transaction costs about 1.2 ms of CPU
(session, greenlet, ORM result layers) against about 0.1 ms for the query
itself on asyncpg. :class:`TenantReads` keeps a small asyncpg pool of its own
for the few read endpoints that dominate traffic, with the same isolation:

- every connection runs ``SET ROLE <app role>`` when it is opened (the role
  ``RESET ALL`` leaves alone), so the row-level-security policies apply;
- every read runs in a ``READ ONLY`` transaction that first sets
  ``pytake.organization_id`` (and ``pytake.bypass_rls`` off) transaction-locally,
  exactly as :class:`~pytake_common.db.Database` does, in the same round trip
  as ``BEGIN``;
- a connection whose transaction did not end cleanly is rolled back, or
  closed when it cannot be, before it goes back to the pool.

Use it for reads only; anything that writes keeps using ``Database``.
"""

from __future__ import annotations

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


class TenantReads:
    """Tenant-bound read-only transactions on a small asyncpg pool (opened lazily)."""

    def __init__(
        self, url: str, *, app_role: str | None = None, min_size: int = 1, max_size: int = 8
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self._app_role = app_role
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None

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
        # (RESET ALL, UNLISTEN, ...) would only add a round trip per read.
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
    async def transaction(
        self, organization_id: uuid.UUID | str, settings: Mapping[str, str] | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a read-only transaction bound to ``organization_id``.

        ``settings`` are more transaction-local settings (e.g. a pg_trgm threshold).
        """
        begin = self.begin_sql(organization_id, settings or {})
        pool = await self.pool()
        async with pool.acquire() as conn:
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

    async def fetch(
        self,
        organization_id: uuid.UUID | str,
        sql: str,
        *args: Any,
        settings: Mapping[str, str] | None = None,
    ) -> list[Record]:
        """Rows of one query, run in its own tenant-bound read-only transaction."""
        async with self.transaction(organization_id, settings) as conn:
            rows: list[Record] = await conn.fetch(sql, *args)
            return rows

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
