"""The contact list query: typo- and accent-tolerant search plus filters, keyset-paginated.

``q`` that looks like a phone number (digits and ``+ ( ) - . /`` spaces) matches the
digits of the stored phone anywhere (``(11) 98765`` finds ``+5511987654321``); any
other ``q`` is split into words and every word must match name, e-mail or company
either as a substring or by trigram word similarity (typos), all accent-free and
lower-cased. Both use per-tenant GIN trigram indexes (migrations 0003, 0004). Results
are ordered by ``(created_at, id)`` so the cursor is stable whatever the search; when
``q`` is the only filter the search function itself returns just that page.

Two renderings of the same conditions: :func:`page_query` (SQLAlchemy, for the export)
and :func:`page_sql` (plain SQL for the raw read path of the list); a test checks that
they answer the same for every filter.
"""

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Integer,
    Select,
    Text,
    Uuid,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY

from pytake_common.pagination import decode_cursor
from pytake_contacts.domain import search_terms
from pytake_contacts.tables import contact_tags, contacts

#: Word similarity needed to count as a typo of a word in the contact (pg_trgm's
#: default 0.6 misses one-letter typos in short names such as "jon" for "john").
WORD_SIMILARITY = 0.5


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
    def uses_similarity(self) -> bool:
        terms = search_terms(self.q) if self.q else None
        return bool(terms and terms.words)

    @property
    def search_only(self) -> bool:
        """Whether ``q`` is the only filter (the search can then pick the page itself)."""
        return all(getattr(self, f.name) is None for f in fields(self) if f.name != "q")


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_args(
    q: str, page: tuple[datetime | None, uuid.UUID | None, int] | None
) -> list[Any] | None:
    """Arguments of ``pytake_contact_matches`` for ``q`` (None: nothing to search).

    ``page`` is (after created_at, after id, rows) when the search picks the page.
    """
    terms = search_terms(q)
    if terms is None:
        return None
    words = list(terms.words)
    patterns = [f"%{_escape_like(w)}%" for w in words]
    after_at, after_id, rows = page if page is not None else (None, None, None)
    return [words, patterns, terms.digits, after_at, after_id, rows]


def _search(
    q: str, page: tuple[datetime | None, uuid.UUID | None, int] | None
) -> list[ColumnElement[bool]]:
    args = search_args(q, page)
    if args is None:
        return []
    # Matching runs in pytake_contact_matches (migrations 0003, 0004): behind RLS, LIKE
    # and <% on contacts itself could never use the trigram indexes.
    words, patterns, digits, after_at, after_id, rows = args
    matches = func.pytake_contact_matches(
        bindparam("search_words", words, type_=ARRAY(Text())),
        bindparam("search_patterns", patterns, type_=ARRAY(Text())),
        bindparam("search_digits", digits, type_=Text()),
        bindparam("search_after_at", after_at, type_=DateTime(timezone=True)),
        bindparam("search_after_id", after_id, type_=Uuid()),
        bindparam("search_rows", rows, type_=Integer()),
    ).column_valued("contact_id")
    return [contacts.c.id.in_(select(matches))]


def conditions(
    org: uuid.UUID,
    f: ContactFilter,
    page: tuple[datetime | None, uuid.UUID | None, int] | None = None,
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [
        contacts.c.organization_id == org,
        contacts.c.deleted_at.is_(None),
    ]
    if f.q:
        where += _search(f.q, page)
    if f.tag_id is not None:
        where.append(
            exists().where(
                and_(
                    contact_tags.c.contact_id == contacts.c.id,
                    contact_tags.c.tag_id == f.tag_id,
                    contact_tags.c.organization_id == org,
                )
            )
        )
    if f.assignee_id is not None:
        where.append(contacts.c.assignee_id == f.assignee_id)
    if f.unassigned is not None:
        col = contacts.c.assignee_id
        where.append(col.is_(None) if f.unassigned else col.is_not(None))
    if f.blocked is not None:
        col = contacts.c.blocked_at
        where.append(col.is_not(None) if f.blocked else col.is_(None))
    if f.opted_in is not None:
        col = contacts.c.marketing_opt_in
        where.append(col.is_(True) if f.opted_in else or_(col.is_(None), col.is_(False)))
    if f.created_from is not None:
        where.append(contacts.c.created_at >= f.created_from)
    if f.created_to is not None:
        where.append(contacts.c.created_at < f.created_to)
    if f.interacted_from is not None:
        where.append(contacts.c.last_interaction_at >= f.interacted_from)
    if f.interacted_to is not None:
        where.append(contacts.c.last_interaction_at < f.interacted_to)
    return where


def _page(
    f: ContactFilter, limit: int, after: tuple[datetime, uuid.UUID] | None
) -> tuple[datetime | None, uuid.UUID | None, int] | None:
    if not f.search_only:
        return None
    return (after[0], after[1], limit) if after else (None, None, limit)


def page_query(
    org: uuid.UUID, f: ContactFilter, limit: int, cursor: str | None, *columns: Any
) -> Select[Any]:
    after = decode_cursor(cursor) if cursor else None
    stmt = select(*(columns or (contacts,))).where(*conditions(org, f, _page(f, limit, after)))
    if after:
        stmt = stmt.where(tuple_(contacts.c.created_at, contacts.c.id) > tuple_(*after))
    return stmt.order_by(contacts.c.created_at, contacts.c.id).limit(limit)


class _Sql:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.args: list[Any] = []

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, condition: str, *values: Any) -> None:
        self.parts.append(condition.format(*(self.arg(v) for v in values)))


def page_sql(
    org: uuid.UUID, f: ContactFilter, limit: int, cursor: str | None, columns: str
) -> tuple[str, list[Any]]:
    """:func:`page_query` as plain SQL with $n parameters (for asyncpg): (sql, args)."""
    after = decode_cursor(cursor) if cursor else None
    w = _Sql()
    w.add("organization_id = {}", org)
    w.add("deleted_at IS NULL")
    if f.q:
        args = search_args(f.q, _page(f, limit, after))
        if args is not None:
            w.add(
                "id IN (SELECT m FROM pytake_contact_matches({}::text[], {}::text[], {}::text,"
                " {}::timestamptz, {}::uuid, {}::int) AS m)",
                *args,
            )
    if f.tag_id is not None:
        w.add(
            "EXISTS (SELECT 1 FROM contact_tags t WHERE t.contact_id = contacts.id"
            " AND t.tag_id = {} AND t.organization_id = {})",
            f.tag_id,
            org,
        )
    if f.assignee_id is not None:
        w.add("assignee_id = {}", f.assignee_id)
    if f.unassigned is not None:
        w.add("assignee_id IS NULL" if f.unassigned else "assignee_id IS NOT NULL")
    if f.blocked is not None:
        w.add("blocked_at IS NOT NULL" if f.blocked else "blocked_at IS NULL")
    if f.opted_in is not None:
        w.add(
            "marketing_opt_in IS TRUE"
            if f.opted_in
            else "(marketing_opt_in IS NULL OR marketing_opt_in IS FALSE)"
        )
    if f.created_from is not None:
        w.add("created_at >= {}", f.created_from)
    if f.created_to is not None:
        w.add("created_at < {}", f.created_to)
    if f.interacted_from is not None:
        w.add("last_interaction_at >= {}", f.interacted_from)
    if f.interacted_to is not None:
        w.add("last_interaction_at < {}", f.interacted_to)
    if after:
        w.add("(created_at, id) > ({}, {})", *after)
    sql = (
        f"SELECT {columns} FROM contacts WHERE {' AND '.join(w.parts)}"  # noqa: S608
        f" ORDER BY created_at, id LIMIT {w.arg(limit)}"
    )
    return sql, w.args


SET_SIMILARITY = "SELECT set_config('pg_trgm.word_similarity_threshold', :value, true)"
#: transaction-local settings of a raw read (pytake_common.reads) with ``q``: the
#: similarity threshold, and no parallel workers — a trigram search for a common word
#: otherwise starts two workers per query, which only adds CPU when 16 clients already
#: keep both cores busy (EXPLAIN: Parallel Bitmap Heap Scan on contact_search).
SEARCH_SETTINGS = {
    "pg_trgm.word_similarity_threshold": str(WORD_SIMILARITY),
    "max_parallel_workers_per_gather": "0",
}
