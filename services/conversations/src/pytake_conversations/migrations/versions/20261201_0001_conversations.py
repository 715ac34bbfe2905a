"""conversations and messages, plus the outbox/inbox/idempotency tables

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from pytake_common.db import rls_statements
from pytake_common.mechanics import create_mechanics_tables, drop_mechanics_tables

revision = "0001"
down_revision = None

ACTIVE = "status IN ('open', 'pending', 'resolved')"


def upgrade() -> None:
    create_mechanics_tables(op.get_bind())
    op.create_table(
        "conversations",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("contact_id", UUID(as_uuid=True), nullable=False),
        sa.Column("number_id", UUID(as_uuid=True), nullable=False),
        sa.Column("phone_number_id", sa.String(64), nullable=False),
        sa.Column("wa_id", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("last_inbound_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "last_message_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("status IN ('open', 'pending', 'resolved', 'closed')", name="status"),
    )
    op.create_index(
        "uq_conversations_active",
        "conversations",
        ["organization_id", "contact_id", "number_id"],
        unique=True,
        postgresql_where=sa.text(ACTIVE),
    )
    op.create_index(
        "ix_conversations_activity", "conversations", ["organization_id", "last_message_at", "id"]
    )
    op.create_table(
        "messages",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column(
            "conversation_id",
            UUID(as_uuid=True),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("content", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("wamid", sa.String(256), nullable=True),
        sa.Column("context_wamid", sa.String(256), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.Integer, nullable=True),
        sa.Column("error_detail", sa.Text, nullable=True),
        sa.Column("sent_by", UUID(as_uuid=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("meta_timestamp", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("direction IN ('inbound', 'outbound')", name="direction"),
        sa.CheckConstraint(
            "status IN ('received', 'pending', 'sent', 'delivered', 'read', 'played', 'failed')",
            name="status",
        ),
    )
    op.create_index(
        "uq_messages_organization_id_wamid",
        "messages",
        ["organization_id", "wamid"],
        unique=True,
        postgresql_where=sa.text("wamid IS NOT NULL"),
    )
    op.create_index("ix_messages_history", "messages", ["conversation_id", "created_at", "id"])
    for table in ("conversations", "messages"):
        for stmt in rls_statements(table):
            op.execute(stmt)


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("conversations")
    drop_mechanics_tables(op.get_bind())
