"""contacts, plus the outbox/inbox/idempotency tables

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

from pytake_common.db import rls_statements
from pytake_common.mechanics import create_mechanics_tables, drop_mechanics_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_mechanics_tables(op.get_bind())
    op.create_table(
        "contacts",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("wa_id", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(128), nullable=True),
        sa.Column("name", sa.String(256), nullable=True),
        sa.Column("name_source", sa.String(16), nullable=False, server_default="profile"),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("last_interaction_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("name_source IN ('profile', 'agent')", name="name_source"),
        sa.CheckConstraint("wa_id IS NOT NULL OR user_id IS NOT NULL", name="identified"),
    )
    op.create_index(
        "uq_contacts_organization_id_wa_id",
        "contacts",
        ["organization_id", "wa_id"],
        unique=True,
        postgresql_where=sa.text("wa_id IS NOT NULL"),
    )
    op.create_index(
        "uq_contacts_organization_id_user_id",
        "contacts",
        ["organization_id", "user_id"],
        unique=True,
        postgresql_where=sa.text("user_id IS NOT NULL"),
    )
    op.create_index(
        "ix_contacts_organization_id_created_at_id",
        "contacts",
        ["organization_id", "created_at", "id"],
    )
    for stmt in rls_statements("contacts"):
        op.execute(stmt)


def downgrade() -> None:
    op.drop_table("contacts")
    drop_mechanics_tables(op.get_bind())
