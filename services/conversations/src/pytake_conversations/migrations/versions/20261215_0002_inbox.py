"""inbox: lifecycle, priority, snooze, assignment, unread, notes, realtime stream,
local replicas (contacts, users, departments) and canned responses

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from pytake_common.db import rls_statements

revision = "0002"
down_revision = "0001"

TS = sa.DateTime(timezone=True)
NEW_TABLES = (
    "stream_events",
    "contact_replicas",
    "user_replicas",
    "departments",
    "canned_responses",
)


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.add_column(
        "conversations",
        sa.Column("priority", sa.String(8), nullable=False, server_default="normal"),
    )
    op.add_column("conversations", sa.Column("snoozed_until", TS, nullable=True))
    op.add_column("conversations", sa.Column("assignee_id", UUID(as_uuid=True), nullable=True))
    op.add_column("conversations", sa.Column("department_id", UUID(as_uuid=True), nullable=True))
    op.add_column(
        "conversations", sa.Column("unread_count", sa.Integer, nullable=False, server_default="0")
    )
    op.add_column("conversations", sa.Column("first_response_at", TS, nullable=True))
    op.add_column("conversations", sa.Column("resolved_at", TS, nullable=True))
    op.add_column("conversations", sa.Column("closed_at", TS, nullable=True))
    op.create_check_constraint(
        "priority", "conversations", "priority IN ('low', 'normal', 'high', 'urgent')"
    )
    op.create_index(
        "ix_conversations_status_activity",
        "conversations",
        ["organization_id", "status", "last_message_at", "id"],
    )
    op.create_index(
        "ix_conversations_assignee_activity",
        "conversations",
        ["organization_id", "assignee_id", "last_message_at", "id"],
    )
    op.create_index(
        "ix_conversations_department_activity",
        "conversations",
        ["organization_id", "department_id", "last_message_at", "id"],
    )
    op.create_index(
        "ix_conversations_snoozed",
        "conversations",
        ["snoozed_until"],
        postgresql_where=sa.text("snoozed_until IS NOT NULL"),
    )

    op.drop_constraint("ck_messages_direction", "messages")
    op.create_check_constraint(
        "direction", "messages", "direction IN ('inbound', 'outbound', 'note')"
    )
    op.drop_constraint("ck_messages_status", "messages")
    op.create_check_constraint(
        "status",
        "messages",
        "status IN ('received', 'pending', 'sent', 'delivered', 'read', 'played', 'failed', "
        "'internal')",
    )
    op.add_column("messages", sa.Column("read_at", TS, nullable=True))
    op.create_index(
        "ix_messages_outbound_month",
        "messages",
        ["organization_id", "created_at"],
        postgresql_where=sa.text("direction = 'outbound'"),
    )
    op.create_index(
        "ix_messages_unread",
        "messages",
        ["conversation_id", "created_at"],
        postgresql_where=sa.text("direction = 'inbound' AND read_at IS NULL"),
    )

    op.create_table(
        "stream_events",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("type", sa.String(80), nullable=False),
        sa.Column("data", JSONB, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=_now()),
    )
    op.create_index("ix_stream_events_org", "stream_events", ["organization_id", "id"])
    op.create_index("ix_stream_events_created_at", "stream_events", ["created_at"])

    op.create_table(
        "contact_replicas",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.String(256), nullable=True),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("blocked", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("blocked_changed_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False, server_default=_now()),
    )
    op.create_table(
        "user_replicas",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("full_name", sa.String(256), nullable=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("version_at", TS, nullable=False),
    )
    op.create_index("ix_user_replicas_org", "user_replicas", ["organization_id"])
    op.create_table(
        "departments",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column(
            "member_ids",
            ARRAY(UUID(as_uuid=True)),
            nullable=False,
            server_default=sa.text("'{}'::uuid[]"),
        ),
        sa.Column("strategy", sa.String(32), nullable=False, server_default="manual"),
        sa.Column("max_open_per_agent", sa.Integer, nullable=True),
        sa.Column("is_default", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column(
            "number_ids",
            ARRAY(UUID(as_uuid=True)),
            nullable=False,
            server_default=sa.text("'{}'::uuid[]"),
        ),
        sa.Column("last_assignee_id", UUID(as_uuid=True), nullable=True),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("version_at", TS, nullable=False),
    )
    op.create_index("ix_departments_org", "departments", ["organization_id"])
    op.create_table(
        "canned_responses",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("shortcode", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_by", UUID(as_uuid=True), nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=_now()),
        sa.Column("updated_at", TS, nullable=False, server_default=_now()),
    )
    op.create_index(
        "uq_canned_responses_shortcode",
        "canned_responses",
        ["organization_id", sa.text("lower(shortcode)")],
        unique=True,
    )
    for table in NEW_TABLES:
        for stmt in rls_statements(table):
            op.execute(stmt)


def downgrade() -> None:
    for table in reversed(NEW_TABLES):
        op.drop_table(table)
    op.drop_index("ix_messages_unread", "messages")
    op.drop_index("ix_messages_outbound_month", "messages")
    op.drop_column("messages", "read_at")
    op.execute("DELETE FROM messages WHERE direction = 'note'")
    op.drop_constraint("ck_messages_status", "messages")
    op.create_check_constraint(
        "status",
        "messages",
        "status IN ('received', 'pending', 'sent', 'delivered', 'read', 'played', 'failed')",
    )
    op.drop_constraint("ck_messages_direction", "messages")
    op.create_check_constraint("direction", "messages", "direction IN ('inbound', 'outbound')")
    for index in (
        "ix_conversations_snoozed",
        "ix_conversations_department_activity",
        "ix_conversations_assignee_activity",
        "ix_conversations_status_activity",
    ):
        op.drop_index(index, "conversations")
    op.drop_constraint("ck_conversations_priority", "conversations")
    for column in (
        "closed_at",
        "resolved_at",
        "first_response_at",
        "unread_count",
        "department_id",
        "assignee_id",
        "snoozed_until",
        "priority",
    ):
        op.drop_column("conversations", column)
