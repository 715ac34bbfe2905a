"""automation: ``sender_type`` widened (automation, campaign) and ``automation_actions``
(the actions of ``actions_requested`` applied, each once)

Revision ID: 0009_auto
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

from pytake_common.db import rls_statements

revision = "0009_auto"
down_revision = "0008"

SENDER_TYPES = "('user', 'api_client', 'automation', 'campaign')"


def upgrade() -> None:
    # NOT VALID then VALIDATE: no write lock on messages while existing rows are checked
    op.execute("ALTER TABLE messages DROP CONSTRAINT ck_messages_sender_type")
    op.execute(
        "ALTER TABLE messages ADD CONSTRAINT ck_messages_sender_type "
        f"CHECK (sender_type IN {SENDER_TYPES}) NOT VALID"
    )
    op.execute("ALTER TABLE messages VALIDATE CONSTRAINT ck_messages_sender_type")
    op.create_table(
        "automation_actions",
        sa.Column("action_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("conversation_id", UUID(as_uuid=True), nullable=False),
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
    op.execute("DELETE FROM messages WHERE sender_type IN ('automation', 'campaign')")
    op.execute("ALTER TABLE messages DROP CONSTRAINT ck_messages_sender_type")
    op.execute(
        "ALTER TABLE messages ADD CONSTRAINT ck_messages_sender_type "
        "CHECK (sender_type IN ('user', 'api_client'))"
    )
