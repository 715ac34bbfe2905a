"""Tables of the contacts database (SQLAlchemy Core)."""

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from pytake_common.auth_users import users_table
from pytake_common.db import new_metadata

metadata = new_metadata()

NAME_SOURCES = ("profile", "agent")


def _ts(name: str, nullable: bool = True) -> "Column[object]":
    return Column(
        name,
        DateTime(timezone=True),
        nullable=nullable,
        server_default=None if nullable else func.now(),
    )


contacts = Table(
    "contacts",
    metadata,
    # The id is the one the gateway derived (pytake_common.ids.contact_id_for), so every
    # service names the same WhatsApp user the same way without calling another.
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("wa_id", String(64), nullable=True),
    Column("user_id", String(128), nullable=True),
    Column("name", String(256), nullable=True),
    Column("name_source", String(16), nullable=False, server_default="profile"),
    Column("phone", String(32), nullable=True),
    Column("email", String(320)),
    Column("company", String(256)),
    Column("job_title", String(256)),
    Column("notes", Text()),
    Column("language", String(35)),
    Column("attributes", JSONB, nullable=False, server_default="{}"),
    _ts("blocked_at"),
    Column("blocked_reason", String(500)),
    Column("blocked_by", UUID(as_uuid=True)),
    Column("marketing_opt_in", Boolean()),
    Column("consent_source", String(100)),
    _ts("consent_changed_at"),
    Column("assignee_id", UUID(as_uuid=True)),
    _ts("created_at", False),
    _ts("updated_at", False),
    _ts("last_interaction_at"),
    _ts("deleted_at"),
    _ts("erased_at"),
    # Maintained by PostgreSQL (see migration 0002): lower-cased, accent-free name/email/
    # company, and the phone's digits; both carry GIN trigram indexes for search.
    Column(
        "search",
        Text(),
        Computed(
            "lower(pytake_unaccent(coalesce(name, '') || ' ' || coalesce(email, '') || ' ' "
            "|| coalesce(company, '')))",
            persisted=True,
        ),
    ),
    Column(
        "phone_digits",
        Text(),
        Computed("regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g')", persisted=True),
    ),
    CheckConstraint("name_source IN ('profile', 'agent')", name="name_source"),
    CheckConstraint("wa_id IS NOT NULL OR user_id IS NOT NULL", name="identified"),
)

Index(
    "uq_contacts_organization_id_wa_id",
    contacts.c.organization_id,
    contacts.c.wa_id,
    unique=True,
    postgresql_where=text("wa_id IS NOT NULL"),
)
Index(
    "uq_contacts_organization_id_user_id",
    contacts.c.organization_id,
    contacts.c.user_id,
    unique=True,
    postgresql_where=text("user_id IS NOT NULL"),
)

tags = Table(
    "tags",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("name", String(64), nullable=False),
    Column("color", String(7), nullable=False),
    _ts("created_at", False),
    _ts("updated_at", False),
)

contact_tags = Table(
    "contact_tags",
    metadata,
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column(
        "contact_id",
        UUID(as_uuid=True),
        ForeignKey("contacts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("tag_id", UUID(as_uuid=True), ForeignKey("tags.id", ondelete="CASCADE"), nullable=False),
    _ts("created_at", False),
    PrimaryKeyConstraint("contact_id", "tag_id"),
)

attribute_definitions = Table(
    "attribute_definitions",
    metadata,
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("key", String(64), nullable=False),
    Column("label", String(128), nullable=False),
    Column("type", String(16), nullable=False),
    Column("allowed_values", JSONB, nullable=True),
    _ts("created_at", False),
    PrimaryKeyConstraint("organization_id", "key"),
)

#: auth's users (from its events), to validate assignees without a call.
users = users_table(metadata)

#: A contact's timeline; ``fact_key`` makes each fact land once whatever event carried it.
contact_interactions = Table(
    "contact_interactions",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("contact_id", UUID(as_uuid=True), nullable=False),
    Column("kind", String(64), nullable=False),
    _ts("occurred_at", False),
    Column("fact_key", String(200), nullable=False),
    Column("data", JSONB, nullable=False, server_default="{}"),
)

#: automation's actions this service applied (``actions_requested``): each at most once
automation_actions = Table(
    "automation_actions",
    metadata,
    Column("action_id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("contact_id", UUID(as_uuid=True), nullable=False),
    Column("type", String(40), nullable=False),
    #: ``applied``, ``unchanged``, or the problem code that stopped it (``unknown_tag``...)
    Column("outcome", String(64), nullable=False),
    Column("detail", String(500), nullable=True),
    _ts("applied_at", False),
)
