"""numbers, webhook deliveries, inbound messages, status updates, send log,
plus the outbox/inbox/idempotency tables

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from pytake_common.db import rls_statements
from pytake_common.mechanics import create_mechanics_tables, drop_mechanics_tables

revision = "0001"
down_revision = None

TENANT_TABLES = ("numbers", "inbound_messages", "status_updates", "send_log")


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


def upgrade() -> None:
    create_mechanics_tables(op.get_bind())
    op.create_table(
        "numbers",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("phone_number_id", sa.String(64), nullable=False, unique=True),
        sa.Column("waba_id", sa.String(64), nullable=False),
        sa.Column("display_phone_number", sa.String(40), nullable=False),
        sa.Column("access_token_enc", sa.Text, nullable=False),
        sa.Column("app_secret_enc", sa.Text, nullable=True),
        sa.Column("verify_token_hash", sa.String(64), nullable=False, index=True),
        sa.Column("status", sa.String(20), nullable=False, server_default="connected"),
        *_timestamps(),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("body_sha256", sa.String(64), nullable=False, index=True),
        sa.Column("signature", sa.String(100), nullable=False),
        sa.Column("body", JSONB, nullable=False),
    )
    op.create_table(
        "inbound_messages",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("number_id", UUID(as_uuid=True), nullable=False),
        sa.Column("phone_number_id", sa.String(64), nullable=False),
        sa.Column("wamid", sa.String(200), nullable=False),
        sa.Column("contact_id", UUID(as_uuid=True), nullable=False),
        sa.Column("type", sa.String(60), nullable=False),
        sa.Column("delivery_id", UUID(as_uuid=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.UniqueConstraint(
            "phone_number_id", "wamid", name="uq_inbound_messages_phone_number_id_wamid"
        ),
    )
    op.create_table(
        "status_updates",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("number_id", UUID(as_uuid=True), nullable=False),
        sa.Column("phone_number_id", sa.String(64), nullable=False),
        sa.Column("wamid", sa.String(200), nullable=False),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("message_id", UUID(as_uuid=True), nullable=True),
        sa.Column("delivery_id", UUID(as_uuid=True), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.UniqueConstraint(
            "phone_number_id",
            "wamid",
            "status",
            name="uq_status_updates_phone_number_id_wamid_status",
        ),
    )
    op.create_table(
        "send_log",
        sa.Column("message_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("number_id", UUID(as_uuid=True), nullable=True),
        sa.Column("conversation_id", UUID(as_uuid=True), nullable=True),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("state", sa.String(20), nullable=False, server_default="claimed"),
        sa.Column("wamid", sa.String(200), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error_code", sa.Integer, nullable=True),
        sa.Column("error_title", sa.String(200), nullable=True),
        sa.Column("error_detail", sa.Text, nullable=True),
        *_timestamps(),
    )
    op.create_index("ix_send_log_wamid", "send_log", ["wamid"])
    for table in TENANT_TABLES:
        for stmt in rls_statements(table):
            op.execute(stmt)


def downgrade() -> None:
    for table in (
        "send_log",
        "status_updates",
        "inbound_messages",
        "webhook_deliveries",
        "numbers",
    ):
        op.drop_table(table)
    drop_mechanics_tables(op.get_bind())
