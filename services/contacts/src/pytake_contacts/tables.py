from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Index,
    String,
    Table,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID

from pytake_common.db import new_metadata

metadata = new_metadata()

NAME_SOURCES = ("profile", "agent")

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
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_interaction_at", DateTime(timezone=True), nullable=True),
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
Index(
    "ix_contacts_organization_id_created_at_id",
    contacts.c.organization_id,
    contacts.c.created_at,
    contacts.c.id,
)
