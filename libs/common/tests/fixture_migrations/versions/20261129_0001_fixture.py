"""A tiny schema for testing the mechanics: a tenant-owned table plus outbox/inbox."""

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
        "notes",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("hits", sa.Integer, nullable=False, server_default="0"),
    )
    for stmt in rls_statements("notes"):
        op.execute(stmt)


def downgrade() -> None:
    op.drop_table("notes")
    drop_mechanics_tables(op.get_bind())
