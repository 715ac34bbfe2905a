"""Campaign messages (``sender_type`` ``campaign`` is allowed since 0009_auto): ``messages.recipient_id`` (unique) and the
recipients handled (``campaign_recipients``)

The check is replaced ``NOT VALID`` and validated afterwards (no write lock while existing
rows are checked); the unique index is built ``CONCURRENTLY`` outside the transaction,
since ``messages`` is the service's largest table.

Revision ID: 0009_cflow
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

from pytake_common.db import rls_statements

revision = "0009_cflow"
down_revision = "0010_slacsat"


def upgrade() -> None:
    op.add_column("messages", sa.Column("recipient_id", UUID(as_uuid=True), nullable=True))
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "
            "uq_messages_organization_id_recipient_id ON messages (organization_id, recipient_id) "
            "WHERE recipient_id IS NOT NULL"
        )
    op.create_table(
        "campaign_recipients",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("campaign_id", UUID(as_uuid=True), nullable=False),
        sa.Column("message_id", UUID(as_uuid=True), nullable=True),
        sa.Column("refused_code", sa.String(64), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    for stmt in rls_statements("campaign_recipients"):
        op.execute(stmt)


def downgrade() -> None:
    op.drop_table("campaign_recipients")
    op.drop_index("uq_messages_organization_id_recipient_id", "messages")
    op.drop_column("messages", "recipient_id")
