"""The contact list query: typo- and accent-tolerant search plus filters, keyset-paginated.

``q`` that looks like a phone number (digits and ``+ ( ) - . /`` spaces) matches the
digits of the stored phone anywhere (``(11) 98765`` finds ``+5511987654321``). Any other
``q`` is split into accent-free lower-case words, and every word must match a word of
the contact's name, e-mail or company: exactly, as a prefix (type-ahead), or — words of
three letters or more — as a substring or a typo. PostgreSQL resolves each query word
against the organization's small vocabulary first, then finds contacts by those exact
words (migration 0005). A contact's rank is the sum over query words of 0 (exact),
1 (prefix) or 2 (substring/typo); search results are ordered by (rank, created_at, id),
plain lists by (created_at, id), and the cursor carries the whole key, so pages are
stable. ``pytake_contact_page`` applies the filters and picks the page itself.

Two renderings of the same conditions: :func:`page_query` (SQLAlchemy, for the export)
and :func:`page_sql` (plain SQL for the raw read path of the list); a test checks that
they answer the same for every filter. :func:`page_json` is the list's page as the JSON
PostgreSQL builds (:data:`CONTACT_JSON`).
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Integer,
    Select,
    Text,
    Uuid,
    bindparam,
    column,
    func,
    select,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.pagination import NUMBER, ROW_ID, TIMESTAMP, keyset
from pytake_common.rawpg import TenantReads
from pytake_contacts.domain import search_digits
from pytake_contacts.schemas import Contact
from pytake_contacts.store import tags_of
from pytake_contacts.tables import contacts

#: the rank column a search page carries (for its cursor)
RANK = "search_rank"


@dataclass(frozen=True, slots=True)
class ContactFilter:
    q: str | None = None
    tag_id: uuid.UUID | None = None
    assignee_id: uuid.UUID | None = None
    unassigned: bool | None = None
    blocked: bool | None = None
    opted_in: bool | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    interacted_from: datetime | None = None
    interacted_to: datetime | None = None

    @property
    def searching(self) -> bool:
        """Whether ``q`` asks for a search (blank ``q`` is no search)."""
        return bool(self.q and self.q.strip())


#: the list's cursor: (rank, created_at, id); a plain list's rows all rank 0
CONTACTS = keyset("contacts", NUMBER, TIMESTAMP, ROW_ID)


def next_cursor(f: ContactFilter, last: Any) -> str:
    """The cursor after row ``last`` of a page listed with ``f``."""
    return CONTACTS.encode((last[RANK] if f.searching else 0, last["created_at"], last["id"]))


#: arguments of pytake_contact_page (migration 0005), in order: name, type, SQL type
PAGE_ARGS: tuple[tuple[str, Any, str], ...] = (
    ("q", Text(), "text"),
    ("digits", Text(), "text"),
    ("tag_id", Uuid(), "uuid"),
    ("assignee_id", Uuid(), "uuid"),
    ("unassigned", Boolean(), "boolean"),
    ("blocked", Boolean(), "boolean"),
    ("opted_in", Boolean(), "boolean"),
    ("created_from", DateTime(timezone=True), "timestamptz"),
    ("created_to", DateTime(timezone=True), "timestamptz"),
    ("interacted_from", DateTime(timezone=True), "timestamptz"),
    ("interacted_to", DateTime(timezone=True), "timestamptz"),
    ("after_rank", Integer(), "int"),
    ("after_at", DateTime(timezone=True), "timestamptz"),
    ("after_id", Uuid(), "uuid"),
    ("max_rows", Integer(), "int"),
)


def page_args(f: ContactFilter, limit: int, cursor: str | None) -> list[Any]:
    """Arguments of ``pytake_contact_page`` for the list with filters ``f``."""
    q = f.q.strip() if f.q else None
    digits = search_digits(q) if q else None
    after = CONTACTS.decode(cursor) if cursor else (None, None, None)
    return [
        None if digits else q or None,
        digits,
        f.tag_id,
        f.assignee_id,
        f.unassigned,
        f.blocked,
        f.opted_in,
        f.created_from,
        f.created_to,
        f.interacted_from,
        f.interacted_to,
        *after,
        limit,
    ]


def page_query(
    org: uuid.UUID, f: ContactFilter, limit: int, cursor: str | None, *columns: Any
) -> Select[Any]:
    page = (
        func.pytake_contact_page(
            *(
                bindparam(f"page_{name}", value, type_=type_)
                for (name, type_, _), value in zip(
                    PAGE_ARGS, page_args(f, limit, cursor), strict=True
                )
            )
        )
        .table_valued(column("contact_id", Uuid()), column("rank", Integer()))
        .alias("page")
    )
    return (
        select(*(columns or (contacts,)), page.c.rank.label(RANK))
        .select_from(page.join(contacts, contacts.c.id == page.c.contact_id))
        .where(contacts.c.organization_id == org, contacts.c.deleted_at.is_(None))
        .order_by(page.c.rank, contacts.c.created_at, contacts.c.id)
    )


#: a page: the ids and ranks from pytake_contact_page, then their rows
_PAGE_PARAMS = ", ".join(f"${i}::{sql}" for i, (_, _, sql) in enumerate(PAGE_ARGS, 1))
_PAGE_SQL = (
    f"SELECT {{columns}}, page.rank AS {RANK} FROM pytake_contact_page({_PAGE_PARAMS}) AS page"  # noqa: S608
    " JOIN contacts ON contacts.id = page.contact_id"
    f" WHERE contacts.organization_id = ${len(PAGE_ARGS) + 1} AND contacts.deleted_at IS NULL"
    " ORDER BY page.rank, contacts.created_at, contacts.id"
)


async def page_rows(
    session: AsyncSession, org: uuid.UUID, f: ContactFilter, limit: int, cursor: str | None
) -> tuple[Sequence[RowMapping], dict[uuid.UUID, list[dict[str, Any]]]]:
    """A page of whole ``contacts`` rows (:func:`page_query`) and each one's tags (the
    export reads the book this way)."""
    rows = (await session.execute(page_query(org, f, limit, cursor))).mappings().all()
    return rows, await tags_of(session, org, [r["id"] for r in rows])


def page_sql(
    org: uuid.UUID, f: ContactFilter, limit: int, cursor: str | None, columns: str
) -> tuple[str, list[Any]]:
    """:func:`page_query` as plain SQL with $n parameters (for asyncpg): (sql, args)."""
    return _PAGE_SQL.format(columns=columns), [*page_args(f, limit, cursor), org]


def _utc_iso(column: str) -> str:
    """SQL: a timestamptz as pydantic writes a UTC datetime (``…:SS.ffffffZ``, the
    fraction only when it is not zero)."""
    return (
        f"replace(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
        " '.000000Z', 'Z')"
    )


#: SQL: the contact's tags, from the tag ids that ``pytake_contact_page`` hands back with
#: each row (migration 0008): nothing to read for a contact without tags
_TAGS_JSON = (
    "CASE WHEN cardinality(page.tag_ids) = 0 THEN '[]'::json ELSE coalesce(("
    "SELECT json_agg(json_build_object('id', t.id, 'name', t.name, 'color', t.color)"
    " ORDER BY lower(t.name)) FROM tags t"
    " WHERE t.id = ANY (page.tag_ids) AND t.organization_id = contacts.organization_id),"
    " '[]'::json) END"
)


def _json_value(field: str, annotation: Any) -> str:
    if field == "tags":
        return _TAGS_JSON
    if field == "blocked":
        return "contacts.blocked_at IS NOT NULL"
    if annotation in (datetime, datetime | None):
        return _utc_iso(f"contacts.{field}")
    return f"contacts.{field}"


#: SQL: a ``contacts`` row (with its tags) of a ``pytake_contact_page`` page as the JSON
#: text of its :class:`Contact`, built by PostgreSQL for the list (the hot path: no row
#: decoding, dicts or JSON encoding in Python); a test checks it against the model's JSON.
CONTACT_JSON = (
    "json_build_object("
    + ", ".join(f"'{f}', {_json_value(f, i.annotation)}" for f, i in Contact.model_fields.items())
    + ")::text"
)


#: what the list selects per contact: the cursor keys and the contact's JSON
LIST_SELECT = f"contacts.id, contacts.created_at, {CONTACT_JSON} AS doc"


async def page_json(
    reads: TenantReads, org: uuid.UUID, f: ContactFilter, limit: int, cursor: str | None
) -> bytes:
    """A page of the list as the JSON of a ``ContactPage`` (the list endpoint and its fast
    path answer with it)."""
    sql, args = page_sql(org, f, limit + 1, cursor, LIST_SELECT)
    # One statement, one snapshot: on a connection already bound to the organization it
    # is one round trip (no BEGIN + settings, no COMMIT).
    async with reads.connection(org) as conn:
        rows = await conn.fetch(sql, *args)
    page = rows[:limit]
    after = f'"{next_cursor(f, page[-1])}"' if len(rows) > limit else "null"
    # The items are PostgreSQL's JSON of each contact (CONTACT_JSON), as the model has them.
    body = '{"items":[' + ",".join(r["doc"] for r in page) + '],"next_cursor":' + after + "}"
    return body.encode()
