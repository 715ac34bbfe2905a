"""How a connection reaches PostgreSQL as a tenant: the one module that spells it.

Row-level security reads two settings (:data:`ORG_SETTING`, :data:`BYPASS_SETTING`,
see :func:`rls_statements`); every path that binds a connection to an organization
takes its statement from here:

* per transaction (``set_config(..., true)``, undone by the transaction's end):
  :data:`BIND_TENANT` for SQLAlchemy sessions (:class:`pytake_common.db.Database`),
  :data:`BIND_ORGANIZATION` / :func:`rebind_sql` to change the organization inside a
  transaction (the event consumer's batches), :func:`bind_select` for a binding that
  carries a statement of its own in the same round trip (webhook intake), and
  :func:`begin_sql` for ``BEGIN`` and the binding as one simple query on raw asyncpg
  (:mod:`pytake_common.rawpg`);
* for the session (``set_config(..., false)``): :data:`STAY_BOUND_SQL`, the binding
  of pooled read connections that stays until the next one
  (:class:`pytake_common.rawpg.TenantReads`).

It also owns converting a database URL between SQLAlchemy's and asyncpg's spelling
(:func:`to_asyncpg_url`, :func:`asyncpg_dsn`), giving up a connection whose state is
not known (:func:`abandon`, :func:`discard`), and the statement timeout of API reads
(:func:`api_read_timeout`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, String, bindparam, func, select, text
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    import asyncpg

ORG_SETTING = "pytake.organization_id"
BYPASS_SETTING = "pytake.bypass_rls"
#: SQLSTATE query_canceled: a statement past its statement_timeout (or pg_cancel_backend)
QUERY_CANCELED = "57014"


def rls_statements(table: str, column: str = "organization_id") -> list[str]:
    """SQL enabling tenant isolation on ``table`` (used by migrations)."""
    predicate = (
        f"current_setting('{BYPASS_SETTING}', true) = 'on' OR {column} = "
        f"NULLIF(current_setting('{ORG_SETTING}', true), '')::uuid"
    )
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY {table}_tenant_isolation ON {table} "
        f"USING ({predicate}) WITH CHECK ({predicate})",
    ]


# --- quoting -------------------------------------------------------------------------


def quote_literal(value: str) -> str:
    """``value`` as an SQL string literal (standard_conforming_strings is on)."""
    if "\x00" in value:
        raise ValueError("NUL in an SQL literal")
    return "'" + value.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def organization_text(organization_id: uuid.UUID | str | None) -> str:
    """The setting's value for ``organization_id``: its canonical text ('' for none).

    Validated as a UUID, so the text is safe to inline in a simple query."""
    return str(uuid.UUID(str(organization_id))) if organization_id else ""


# --- the binding statements ----------------------------------------------------------

#: The statement timeout of API reads, in milliseconds (None: the server's own).
#: Set per request by :class:`pytake_common.web.ObservabilityMiddleware` for GET and
#: HEAD; every binding below carries it, in the same round trip.
read_timeout_var: ContextVar[int | None] = ContextVar("read_timeout_ms", default=None)


@contextmanager
def api_read_timeout(milliseconds: int | None) -> Iterator[None]:
    """Bind the transactions begun inside the block with ``statement_timeout`` (ms)."""
    token = read_timeout_var.set(milliseconds or None)
    try:
        yield
    finally:
        read_timeout_var.reset(token)


def allow_long_reads() -> None:
    """Lift the API read timeout for the rest of this request (streamed exports)."""
    read_timeout_var.set(None)


def _call(setting: str, value: str, *, local: bool = True) -> str:
    return f"set_config({quote_literal(setting)}, {value}, {'true' if local else 'false'})"


_TENANT = f"SELECT {_call(ORG_SETTING, ':org')}, {_call(BYPASS_SETTING, ':bypass')}"
# Built once: text() parses its SQL for bind parameters on every construction.
#: A SQLAlchemy transaction's binding (``:org``, ``:bypass`` 'on'/'off').
BIND_TENANT = text(_TENANT)
#: The same, for an API read: ``:timeout`` is the statement timeout (e.g. '5000').
BIND_TENANT_READ = text(f"{_TENANT}, {_call('statement_timeout', ':timeout')}")
#: Changes the organization inside a transaction (``:org``).
BIND_ORGANIZATION = text(f"SELECT {_call(ORG_SETTING, ':org')}")

#: Binds a pooled read connection for its session (``$1``: the organization's text);
#: it stays bound until the next binding, so a read for the same organization needs none.
STAY_BOUND_SQL = (
    f"SELECT {_call(ORG_SETTING, '$1', local=False)}, "
    f"{_call(BYPASS_SETTING, quote_literal('off'), local=False)}"
)


def tenant_params(organization_id: uuid.UUID | str | None, bypass_rls: bool) -> dict[str, str]:
    """Parameters of :data:`BIND_TENANT`."""
    return {
        "org": str(organization_id) if organization_id else "",
        "bypass": "on" if bypass_rls else "off",
    }


def bind_select() -> Select[Any]:
    """A Core ``SELECT`` binding the transaction to ``:org`` with bypass off, for a
    statement that adds its own work to the binding's round trip (``add_cte``)."""
    return select(
        func.set_config(ORG_SETTING, bindparam("org", type_=String()), True),
        func.set_config(BYPASS_SETTING, "off", True),
    )


def rebind_sql(organization_id: uuid.UUID | str) -> str:
    """:data:`BIND_ORGANIZATION` as a simple query with the id inlined (quoted: any text,
    as :data:`BIND_ORGANIZATION` would pass it), to join other statements in one round trip."""
    return f"SELECT {_call(ORG_SETTING, quote_literal(str(organization_id)))}"


def begin_sql(
    organization_id: uuid.UUID | str | None,
    *,
    bypass_rls: bool = False,
    read_only: bool = False,
    settings: Mapping[str, str] | None = None,
) -> str:
    """``BEGIN`` and the tenant binding as one simple query (one round trip, no
    parameters: the values are validated or quoted). ``settings``: more
    transaction-local settings; an API read's statement timeout rides along."""
    configs = {
        ORG_SETTING: organization_text(organization_id),
        BYPASS_SETTING: "on" if bypass_rls else "off",
    }
    timeout = read_timeout_var.get()
    if timeout:
        configs["statement_timeout"] = str(timeout)
    configs.update(settings or {})
    calls = ", ".join(_call(k, quote_literal(v)) for k, v in configs.items())
    return f"BEGIN{' READ ONLY' if read_only else ''}; SELECT {calls}"


# --- URLs ----------------------------------------------------------------------------


def _url(url: str, drivername: str, database: str | None) -> str:
    parsed = make_url(url).set(drivername=drivername)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def to_asyncpg_url(url: str, database: str | None = None) -> str:
    """``url`` (any PostgreSQL URL) as SQLAlchemy's ``postgresql+asyncpg://`` URL,
    on ``database`` when given."""
    return _url(url, "postgresql+asyncpg", database)


def asyncpg_dsn(url: str, database: str | None = None) -> str:
    """A SQLAlchemy URL (``postgresql+asyncpg://``) as a DSN asyncpg understands,
    on ``database`` when given."""
    return _url(url, "postgresql", database)


# --- giving a connection up ----------------------------------------------------------


def discard(conn: asyncpg.Connection, forget: Callable[[], object] | None = None) -> None:
    """Close ``conn`` now (synchronously: a second cancellation cannot interrupt it)
    and have its pool forget it (``forget``; asyncpg's own pool notices by itself)."""
    conn.terminate()
    if forget is not None:
        forget()


async def abandon(
    conn: asyncpg.Connection, forget: Callable[[], object] | None = None, *, began: bool = True
) -> None:
    """End what a block left open on ``conn`` when it did not finish cleanly; the
    error that got here propagates.

    A transaction is rolled back. A connection whose state is not known is
    discarded (:func:`discard`): lost midway, a rollback that failed or was
    cancelled, or (``began``: the block had sent ``BEGIN``) one the driver does not
    see in a transaction, since a cancellation that cut ``BEGIN`` and its binding
    short can leave the server in a transaction the driver has not seen.
    """
    if conn.is_closed():
        discard(conn, forget)
        return
    if not conn.is_in_transaction():
        if began:
            discard(conn, forget)
        return
    try:
        await conn.execute("ROLLBACK")
    except Exception:
        discard(conn, forget)  # e.g. the server is gone
        return
    except BaseException:
        discard(conn, forget)  # cancelled while rolling back
        raise
    if conn.is_closed():
        discard(conn, forget)
