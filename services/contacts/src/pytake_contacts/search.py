"""The contact list query: typo- and accent-tolerant search plus filters, keyset-paginated.

``q`` that looks like a phone number (digits and ``+ ( ) - . /`` spaces) matches the
digits of the stored phone anywhere (``(11) 98765`` finds ``+5511987654321``); any
other ``q`` is split into words and every word must match name, e-mail or company
either as a substring or by trigram word similarity (typos), all accent-free and
lower-cased. Both use GIN trigram indexes (migration 0003). Results are ordered by
``(created_at, id)`` so the cursor is stable whatever the search.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
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


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _search(q: str) -> list[ColumnElement[bool]]:
    terms = search_terms(q)
    if terms is None:
        return []
    # Matching runs in pytake_contact_matches (migration 0003): behind RLS, LIKE and <% on
    # contacts itself could never use the trigram indexes.
    words = list(terms.words)
    matches = func.pytake_contact_matches(
        bindparam("search_words", words, type_=ARRAY(Text())),
        bindparam("search_patterns", [f"%{_escape_like(w)}%" for w in words], type_=ARRAY(Text())),
        bindparam("search_digits", terms.digits, type_=Text()),
    ).column_valued("contact_id")
    return [contacts.c.id.in_(select(matches))]


def conditions(org: uuid.UUID, f: ContactFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [
        contacts.c.organization_id == org,
        contacts.c.deleted_at.is_(None),
    ]
    if f.q:
        where += _search(f.q)
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


def page_query(
    org: uuid.UUID, f: ContactFilter, limit: int, cursor: str | None, *columns: Any
) -> Select[Any]:
    stmt = select(*(columns or (contacts,))).where(*conditions(org, f))
    if cursor:
        at, last_id = decode_cursor(cursor)
        stmt = stmt.where(tuple_(contacts.c.created_at, contacts.c.id) > tuple_(at, last_id))
    return stmt.order_by(contacts.c.created_at, contacts.c.id).limit(limit)


SET_SIMILARITY = "SELECT set_config('pg_trgm.word_similarity_threshold', :value, true)"
