"""The contacts API's bodies, which the service modules take and answer with."""

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pytake_contacts.domain import (
    MAX_COMPANY,
    MAX_EMAIL,
    MAX_JOB_TITLE,
    MAX_LANGUAGE,
    MAX_NAME,
    MAX_NOTES,
)
from pytake_contacts.store import Row


class TagRef(BaseModel):
    id: uuid.UUID
    name: str
    color: str


class Contact(BaseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    wa_id: str | None
    user_id: str | None
    name: str | None
    name_source: str
    phone: str | None
    email: str | None
    company: str | None
    job_title: str | None
    notes: str | None
    language: str | None
    attributes: dict[str, Any]
    tags: list[TagRef]
    assignee_id: uuid.UUID | None
    blocked: bool
    blocked_at: datetime | None
    blocked_reason: str | None
    marketing_opt_in: bool | None
    consent_source: str | None
    consent_changed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_interaction_at: datetime | None

    @classmethod
    def of(cls, row: Row, tags: list[dict[str, Any]]) -> "Contact":
        values = {k: row[k] for k in cls.model_fields if k in row}
        return cls.model_validate(values | {"tags": tags, "blocked": row["blocked_at"] is not None})


class ContactPage(BaseModel):
    items: list[Contact]
    next_cursor: str | None


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=MAX_NAME)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=MAX_EMAIL)
    company: str | None = Field(default=None, max_length=MAX_COMPANY)
    job_title: str | None = Field(default=None, max_length=MAX_JOB_TITLE)
    notes: str | None = Field(default=None, max_length=MAX_NOTES)
    language: str | None = Field(default=None, max_length=MAX_LANGUAGE)


class ContactCreate(_Fields):
    """A contact added by hand: ``phone`` (any format with the country code) or ``user_id``."""

    user_id: str | None = Field(default=None, min_length=1, max_length=128)
    attributes: dict[str, Any] = Field(default_factory=dict)


class ContactPatch(_Fields):
    """Only the fields sent change; ``null`` clears a field; attributes merge (null removes)."""

    attributes: dict[str, Any] | None = None


class BlockBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500)


class ConsentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    marketing_opt_in: bool
    source: str = Field(min_length=1, max_length=100)


class AssignBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee_id: uuid.UUID | None


class Interaction(BaseModel):
    id: uuid.UUID
    kind: str
    occurred_at: datetime
    data: dict[str, Any]


class Timeline(BaseModel):
    items: list[Interaction]
    next_cursor: str | None


class Tag(BaseModel):
    id: uuid.UUID
    name: str
    color: str
    contact_count: int
    created_at: datetime
    updated_at: datetime


class TagList(BaseModel):
    items: list[Tag]


class TagCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    color: str = "#808080"


class TagPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=64)
    color: str | None = None


AttributeType = Literal["text", "number", "date", "boolean", "list", "link"]


class AttributeDefinitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    label: str = Field(min_length=1, max_length=128)
    type: AttributeType
    allowed_values: list[str] | None = Field(default=None, max_length=200)


class AttributeDefinitionOut(BaseModel):
    key: str
    label: str
    type: str
    allowed_values: list[str] | None
    created_at: datetime


class AttributeDefinitionList(BaseModel):
    items: list[AttributeDefinitionOut]


class ImportFailure(BaseModel):
    row: int
    error: str


class ImportResult(BaseModel):
    created: int
    updated: int
    unchanged: int
    failed: list[ImportFailure]
