"""chatbot flows: drafts, immutable versions, sessions (one active per conversation), hosts

Revision ID: 0002_flows
"""

import sqlalchemy as sa
from alembic import op

from pytake_common.db import rls_statements

revision = "0002_flows"
down_revision = "0001_auto_core"

TENANT_TABLES = ("flows", "flow_versions", "flow_sessions", "flow_http_hosts")


def upgrade() -> None:
    op.create_table(
        "flows",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("definition", sa.dialects.postgresql.JSONB(), nullable=False),
        sa.Column("published_version", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flows")),
    )
    op.create_index("ix_flows_org_created", "flows", ["organization_id", "created_at", "id"])
    op.create_table(
        "flow_versions",
        sa.Column("flow_id", sa.UUID(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("definition", sa.dialects.postgresql.JSONB(), nullable=False),
        sa.Column("published_by", sa.UUID(), nullable=True),
        sa.Column(
            "published_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("flow_id", "version", name=op.f("pk_flow_versions")),
        sa.ForeignKeyConstraint(
            ["flow_id"],
            ["flows.id"],
            name=op.f("fk_flow_versions_flow_id_flows"),
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "flow_sessions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("conversation_id", sa.UUID(), nullable=False),
        sa.Column("contact_id", sa.UUID(), nullable=False),
        sa.Column("number_id", sa.UUID(), nullable=True),
        sa.Column("flow_id", sa.UUID(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("end_reason", sa.String(length=40), nullable=True),
        sa.Column("state", sa.dialects.postgresql.JSONB(), nullable=False),
        sa.Column("trigger_key", sa.String(length=200), nullable=False),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_sessions")),
        sa.UniqueConstraint(
            "organization_id",
            "conversation_id",
            "flow_id",
            "trigger_key",
            name="uq_flow_sessions_trigger",
        ),
    )
    op.create_index(
        "uq_flow_sessions_active",
        "flow_sessions",
        ["conversation_id"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index("ix_flow_sessions_flow", "flow_sessions", ["flow_id", "status"])
    op.create_table(
        "flow_http_hosts",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "host", name=op.f("pk_flow_http_hosts")),
    )
    for table in TENANT_TABLES:
        for stmt in rls_statements(table):
            op.execute(stmt)


def downgrade() -> None:
    for table in reversed(TENANT_TABLES):
        op.drop_table(table)
