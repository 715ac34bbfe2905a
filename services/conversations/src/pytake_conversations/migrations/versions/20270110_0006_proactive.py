"""proactive conversations: what conversations needs to start one

- ``conversations.previous_conversation_id``: a closed conversation stays closed; the
  next one of the same contact on the same number links back to it;
- ``contact_replicas`` learns the WhatsApp ids, custom attributes, marketing consent and
  erasure of each contact (from contacts' events);
- ``number_replicas`` and ``template_replicas``: the organization's WhatsApp numbers and
  their message templates (from whatsapp-gateway's events).

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from pytake_common.db import rls_statements

revision = "0006"
down_revision = "0005"

TS = sa.DateTime(timezone=True)
NEW_TABLES = ("number_replicas", "template_replicas")


def _contact_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("wa_id", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(128), nullable=True),
        sa.Column("attributes", JSONB, nullable=True),
        sa.Column("attributes_at", TS, nullable=True),
        sa.Column("marketing_opt_in", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("consent_changed_at", TS, nullable=True),
        sa.Column("erased_at", TS, nullable=True),
    ]


def upgrade() -> None:
    op.add_column(
        "conversations",
        sa.Column(
            "previous_conversation_id",
            UUID(as_uuid=True),
            sa.ForeignKey(
                "conversations.id",
                ondelete="SET NULL",
                name="fk_conversations_previous_conversation_id_conversations",
            ),
            nullable=True,
        ),
    )
    op.add_column("conversations", sa.Column("started_by", UUID(as_uuid=True), nullable=True))
    for column in _contact_columns():
        op.add_column("contact_replicas", column)
    op.create_table(
        "number_replicas",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("phone_number_id", sa.String(64), nullable=True),
        sa.Column("waba_id", sa.String(64), nullable=True),
        sa.Column("display_phone_number", sa.String(32), nullable=True),
        sa.Column("status", sa.String(20), nullable=False, server_default="connected"),
        sa.Column("version_at", TS, nullable=False),
    )
    op.create_index("ix_number_replicas_org", "number_replicas", ["organization_id"])
    op.create_table(
        "template_replicas",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("number_id", UUID(as_uuid=True), nullable=True),
        sa.Column("waba_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("components", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("version_at", TS, nullable=False),
    )
    op.create_index(
        "ix_template_replicas_lookup",
        "template_replicas",
        ["organization_id", "waba_id", "name", "language"],
    )
    for table in NEW_TABLES:
        for stmt in rls_statements(table):
            op.execute(stmt)


def downgrade() -> None:
    for table in reversed(NEW_TABLES):
        op.drop_table(table)
    for column in reversed(_contact_columns()):
        op.drop_column("contact_replicas", column.name)
    op.drop_column("conversations", "started_by")
    op.drop_column("conversations", "previous_conversation_id")
