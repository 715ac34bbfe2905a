"""automation: ``automation_actions`` (the actions of ``actions_requested`` applied, each once)

Revision ID: 0011_auto
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

from pytake_common.db import rls_statements

revision = "0011_auto"
down_revision = "0010"


def upgrade() -> None:
    op.create_table(
        "automation_actions",
        sa.Column("action_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("contact_id", UUID(as_uuid=True), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("detail", sa.String(500), nullable=True),
        sa.Column(
            "applied_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    for stmt in rls_statements("automation_actions"):
        op.execute(stmt)


def downgrade() -> None:
    op.drop_table("automation_actions")
