"""webhook endpoints, deliveries, plus the outbox/inbox/idempotency tables

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from pytake_common.db import rls_statements
from pytake_common.mechanics import create_mechanics_tables, drop_mechanics_tables

revision = "0001"
down_revision = None


def _ts(name: str, nullable: bool = True, now: bool = False) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if now else None,
    )


def upgrade() -> None:
    create_mechanics_tables(op.get_bind())
    op.create_table(
        "endpoints",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("event_types", ARRAY(sa.String(60)), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="enabled"),
        sa.Column("disabled_reason", sa.String(500), nullable=True),
        _ts("disabled_at"),
        sa.Column("secret_enc", sa.Text, nullable=False),
        sa.Column("previous_secret_enc", sa.Text, nullable=True),
        _ts("previous_secret_expires_at"),
        _ts("failing_since"),
        sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
        _ts("created_at", False, True),
        _ts("updated_at", False, True),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column(
            "endpoint_id",
            UUID(as_uuid=True),
            sa.ForeignKey("endpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        sa.Column("event_type", sa.String(60), nullable=False),
        sa.Column("ordering_key", sa.String(80), nullable=False),
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("replay_of", UUID(as_uuid=True), nullable=True),
        sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        _ts("next_attempt_at", False, True),
        _ts("lease_until"),
        _ts("last_attempt_at"),
        _ts("completed_at"),
        sa.Column("response_status", sa.Integer, nullable=True),
        sa.Column("response_body", sa.String(1024), nullable=True),
        sa.Column("latency_ms", sa.Integer, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        _ts("created_at", False, True),
    )
    op.create_index(
        "uq_deliveries_endpoint_event",
        "deliveries",
        ["endpoint_id", "event_id"],
        unique=True,
        postgresql_where=sa.text("replay_of IS NULL"),
    )
    op.create_index(
        "ix_deliveries_pending",
        "deliveries",
        ["endpoint_id", "ordering_key", "seq"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_deliveries_endpoint_created", "deliveries", ["endpoint_id", "created_at", "id"]
    )
    op.create_index("ix_deliveries_created_at", "deliveries", ["created_at"])
    for table in ("endpoints", "deliveries"):
        for stmt in rls_statements(table):
            op.execute(stmt)


def downgrade() -> None:
    op.drop_table("deliveries")
    op.drop_table("endpoints")
    drop_mechanics_tables(op.get_bind())
