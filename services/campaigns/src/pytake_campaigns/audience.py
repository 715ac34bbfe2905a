"""Who a campaign goes to: the audience model, and its SQL over the contact replica.

An audience is the contacts matching every criterion given (``tags_any``: at least one
of the tags; ``tags_all``: every one of them; ``filters``: those of ``GET /v1/contacts``
the replica can answer), plus the explicit ``contact_ids``; ``all_contacts`` selects every
contact. Ids that are no contact of the organization (unknown, another organization's)
are left out and counted as ``not_found``: saying which would tell one organization
about another's ids.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import ColumnElement, and_, exists, false, func, literal, or_, select, true
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from pytake_campaigns.tables import contact_replicas, contact_tags

MAX_TAGS = 50
MAX_CONTACT_IDS = 10_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AudienceFilters(Strict):
    """The contact list's filters (``GET /v1/contacts``) that campaigns' replica holds."""

    #: case-insensitive part of the contact's name, or digits of its phone
    q: str | None = Field(default=None, min_length=1, max_length=200)
    assignee_id: uuid.UUID | None = None
    unassigned: bool | None = None
    opted_in: bool | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


class Audience(Strict):
    all_contacts: bool = False
    tags_any: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_TAGS)
    tags_all: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_TAGS)
    contact_ids: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_CONTACT_IDS)
    filters: AudienceFilters | None = None

    @model_validator(mode="after")
    def _says_who(self) -> Self:
        criteria = self.all_contacts or self.tags_any or self.tags_all or self.contact_ids
        if not criteria and (self.filters is None or not self.filters.model_fields_set):
            raise ValueError("say who: all_contacts, tags_any, tags_all, filters or contact_ids")
        return self

    def tag_ids(self) -> set[uuid.UUID]:
        return {*self.tags_any, *self.tags_all}


def _has_tag(tag_id: Any) -> ColumnElement[bool]:
    t = contact_tags.c
    return (
        exists()
        .where(t.contact_id == contact_replicas.c.id, t.tag_id == tag_id)
        .correlate(contact_replicas)
    )


def _filters(f: AudienceFilters) -> list[ColumnElement[bool]]:
    c = contact_replicas.c
    out: list[ColumnElement[bool]] = []
    if f.q is not None and f.q.strip():
        term = f.q.strip()
        digits = "".join(ch for ch in term if ch.isdigit())
        pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        found: ColumnElement[bool] = c.name.ilike(pattern)
        if digits and len(digits) >= 3:
            found = or_(found, func.regexp_replace(c.phone, "[^0-9]", "", "g").contains(digits))
        out.append(found)
    if f.assignee_id is not None:
        out.append(c.assignee_id == f.assignee_id)
    if f.unassigned is not None:
        out.append(c.assignee_id.is_(None) if f.unassigned else c.assignee_id.is_not(None))
    if f.opted_in is not None:
        out.append(c.marketing_opt_in.is_(f.opted_in))
    if f.created_from is not None:
        out.append(c.created_at >= f.created_from)
    if f.created_to is not None:
        out.append(c.created_at < f.created_to)
    return out


def criteria(audience: Audience) -> ColumnElement[bool]:
    """SQL: the contact replica row is in the audience (the organization filter aside)."""
    matches: list[ColumnElement[bool]] = []
    if audience.tags_any:
        t = contact_tags.c
        matches.append(
            exists()
            .where(
                t.contact_id == contact_replicas.c.id,
                t.tag_id == func.any(_ids(audience.tags_any)),
            )
            .correlate(contact_replicas)
        )
    matches.extend(_has_tag(tag) for tag in audience.tags_all)
    if audience.filters is not None:
        matches.extend(_filters(audience.filters))
    by_criteria: ColumnElement[bool] = false()
    if audience.all_contacts or matches:
        by_criteria = and_(true(), *matches)
    if audience.contact_ids:
        return or_(by_criteria, contact_replicas.c.id == func.any(_ids(audience.contact_ids)))
    return by_criteria


def _ids(ids: list[uuid.UUID]) -> Any:
    return literal(ids, ARRAY(UUID(as_uuid=True)))


def matched(org: uuid.UUID, audience: Audience) -> Any:
    """SELECT the organization's contacts in the audience, with what decides exclusion."""
    c = contact_replicas.c
    return select(
        c.id.label("contact_id"),
        c.blocked,
        c.erased_at,
        c.marketing_opt_in,
        c.wa_id,
        c.user_id,
    ).where(c.organization_id == org, criteria(audience))
