"""Async SQLAlchemy 2 + asyncpg: one engine per service, a session per request/message.

Row-level security is the second line of tenancy: every transaction of a session
opened for an organization is bound to it first (:data:`pytake_common.pgtenant.BIND_TENANT`),
and the application connects under a non-owner role (``db_app_role``) so the
policies written by :func:`~pytake_common.pgtenant.rls_statements` apply even to
superuser logins. A statement that runs past its ``statement_timeout`` (API reads,
:func:`pytake_common.pgtenant.api_read_timeout`) raises :class:`StatementTimeout` (503).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import MetaData, event, text
from sqlalchemy.engine import Connection, ExceptionContext
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction
from sqlalchemy.util import await_

from pytake_common.errors import StatementTimeout
from pytake_common.pgtenant import (
    BIND_ORGANIZATION,
    BIND_TENANT,
    BIND_TENANT_READ,
    QUERY_CANCELED,
    begin_sql,
    read_timeout_var,
    tenant_params,
)
from pytake_common.pgtenant import rls_statements as rls_statements  # migrations import it here

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


def _statement_timeout(context: ExceptionContext) -> BaseException | None:
    """Turn a statement cut off by the server into :class:`StatementTimeout`."""
    if getattr(context.original_exception, "sqlstate", None) == QUERY_CANCELED:
        return StatementTimeout()
    return None


class Base(DeclarativeBase):
    """Declarative base for services that prefer one; each service may pass its own metadata."""

    metadata = new_metadata()


class RawTransaction:
    """A transaction begun on the asyncpg connection itself, handed to SQLAlchemy's asyncpg
    adapter as if it had begun it (the adapter only ever commits or rolls it back)."""

    __slots__ = ("conn",)

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def commit(self) -> None:
        await self.conn.execute("COMMIT")

    async def rollback(self) -> None:
        await self.conn.execute("ROLLBACK")


def _bind_tenant(session: Session, tx: SessionTransaction, connection: Connection) -> None:
    """Bind the transaction (role set at connect) to the session's tenant.

    On asyncpg, ``BEGIN`` and the binding go as one simple query (one round trip, no
    statement through SQLAlchemy's execution layers): the adapter has not begun its
    transaction yet (it does so lazily, at the first statement) and is handed this one.
    Otherwise (another driver, an isolation level of the adapter's own) the binding is a
    statement of the transaction SQLAlchemy begins.

    Savepoints inherit the enclosing transaction's settings, so they are not bound again
    (code that changes tenant inside a transaction calls :func:`bind_organization`)."""
    if tx.nested:
        return
    organization = session.info.get("organization_id")
    bypass = session.info.get("bypass_rls", False)
    adapted: Any = getattr(connection.connection, "dbapi_connection", None)
    if (
        getattr(adapted, "_transaction", False) is None
        and adapted.isolation_level is None
        and not (adapted.readonly or adapted.deferrable)
        # closed by the server in the pool (PostgreSQL restarted): SQLAlchemy's own
        # statement below fails as a disconnect, invalidating the pool (a raw BEGIN's
        # error would leave every such connection in it)
        and not adapted._connection.is_closed()
    ):
        try:
            begin = begin_sql(organization, bypass_rls=bypass)
        except ValueError:  # not a UUID: bound as the text it is, below
            begin = None
        if begin is not None:
            _begin_raw(adapted, begin)
            return
    params = tenant_params(organization, bypass)
    timeout = read_timeout_var.get()
    if timeout:
        connection.execute(BIND_TENANT_READ, {**params, "timeout": str(timeout)})
    else:
        connection.execute(BIND_TENANT, params)


def _begin_raw(adapted: Any, begin: str) -> None:
    """Run ``begin`` on the adapter's asyncpg connection and make it the adapter's
    transaction. It is recorded first, so that a connection whose ``BEGIN`` was cut short
    is rolled back when it goes back to the pool (a ``ROLLBACK`` outside a transaction
    only warns); a ``BEGIN`` that failed without starting one leaves nothing recorded."""
    conn = adapted._connection

    async def run() -> None:
        async with adapted._execute_mutex:
            await conn.execute(begin)

    adapted._transaction = RawTransaction(conn)
    try:
        await_(run())
    except Exception as error:
        if not conn.is_in_transaction():
            adapted._transaction = None
        adapted._handle_exception(error)  # raises the DBAPI error SQLAlchemy expects


_SAVEPOINT_STATEMENTS = ("SAVEPOINT ", "RELEASE SAVEPOINT ", "ROLLBACK TO SAVEPOINT ")


def _savepoint_unprepared(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
    """Run SQLAlchemy's savepoint statements as simple queries, not prepared ones.

    ``begin_nested()`` names savepoints ``sa_savepoint_<n>`` with ``n`` counting up
    within a transaction: with many savepoints in one transaction (a consumer batch)
    each name was a new prepared statement (an extra round trip) that also pushed the
    handlers' statements out of asyncpg's per-connection statement cache.
    """
    if parameters or not statement.startswith(_SAVEPOINT_STATEMENTS):
        return False
    adapted = getattr(cursor, "_adapt_connection", None)
    if adapted is None or adapted._transaction is None:
        return False  # not asyncpg, or no transaction yet: the ordinary path

    async def run() -> None:
        async with adapted._execute_mutex:
            await adapted._connection.execute(statement)

    try:
        await_(run())
    except Exception as error:
        adapted._handle_exception(error)  # raises the DBAPI error SQLAlchemy expects
    return True


class Database:
    def __init__(self, url: str, *, app_role: str | None = None, pool_size: int = 10) -> None:
        self.url = url
        #: the role every connection takes (``SET ROLE``) so row-level security applies
        self.app_role = app_role
        self.engine: AsyncEngine = create_async_engine(
            # No pre-ping: it costs a round trip on every checkout; stale connections
            # are recycled instead and a failed statement surfaces as a retryable error.
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_recycle=1800,
        )
        if app_role:
            quoted = '"' + app_role.replace('"', '""') + '"'

            @event.listens_for(self.engine.sync_engine, "connect")
            def _set_role(dbapi_conn: Any, _record: Any) -> None:
                cursor = dbapi_conn.cursor()
                cursor.execute(f"SET ROLE {quoted}")
                cursor.close()
                # The driver ran it in a transaction of its own: committed now, or the
                # first transaction on this connection would carry it, and a rollback of
                # that one would leave the connection as the login role (RLS bypassed).
                dbapi_conn.commit()

        event.listen(self.engine.sync_engine, "do_execute", _savepoint_unprepared)
        event.listen(self.engine.sync_engine, "handle_error", _statement_timeout)
        # A Session class of this Database's own: a listener on SQLAlchemy's global
        # Session would fire once per Database object in the process on every begin.
        session_class = type("TenantBoundSession", (Session,), {})
        event.listen(session_class, "after_begin", _bind_tenant)
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=session_class
        )

    def session(
        self, organization_id: uuid.UUID | str | None = None, *, bypass_rls: bool = False
    ) -> AsyncSession:
        """A session whose every transaction is bound to ``organization_id``.

        ``bypass_rls`` is for platform paths that must look across tenants before
        the tenant is known (webhook intake, login by email); use it sparingly.
        """
        session = self.sessionmaker()
        session.info["organization_id"] = organization_id
        session.info["bypass_rls"] = bypass_rls
        return session

    @asynccontextmanager
    async def transaction(
        self, organization_id: uuid.UUID | str | None = None, *, bypass_rls: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """Open a session, begin, commit on success, roll back on error."""
        async with self.session(organization_id, bypass_rls=bypass_rls) as session:
            async with session.begin():
                yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (None before any migration)."""
        async with self.engine.connect() as conn:
            exists = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
            if not exists:
                return None
            revision = await conn.scalar(text("SELECT version_num FROM alembic_version"))
            return str(revision) if revision is not None else None

    async def dispose(self) -> None:
        await self.engine.dispose()


async def bind_organization(session: AsyncSession, organization_id: uuid.UUID | str | None) -> None:
    """Bind ``session`` to an organization, now and for its later transactions."""
    session.info["organization_id"] = organization_id
    if session.in_transaction():
        await session.execute(
            BIND_ORGANIZATION, {"org": str(organization_id) if organization_id else ""}
        )
