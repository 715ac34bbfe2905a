"""organizations, plus the outbox/inbox/idempotency tables

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
        "organizations",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("slug", sa.String(80), nullable=False, unique=True),
        sa.Column("plan", sa.String(40), nullable=False, server_default="free"),
        sa.Column("status", sa.String(20), nullable=False, server_default="active"),
        sa.Column("created_by", UUID(as_uuid=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    for stmt in rls_statements("organizations", column="id"):
        op.execute(stmt)


def downgrade() -> None:
    op.drop_table("organizations")
    drop_mechanics_tables(op.get_bind())
