"""automation: SLA policies and each conversation's SLA cycle; CSAT settings and surveys

Revision ID: 0002_slacsat
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from pytake_common.db import rls_statements

revision = "0002_slacsat"
down_revision = "0002_flows"

TENANT_TABLES = ("sla_policies", "sla_states", "csat_settings", "csat_surveys")
TS = sa.DateTime(timezone=True)
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "sla_policies",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sla_policies"),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("is_default", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("position", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "department_ids", postgresql.ARRAY(sa.UUID()), server_default="{}", nullable=False
        ),
        sa.Column("number_ids", postgresql.ARRAY(sa.UUID()), server_default="{}", nullable=False),
        sa.Column("business_hours", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("targets", postgresql.JSONB(), nullable=False),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column("created_at", TS, server_default=NOW, nullable=False),
        sa.Column("updated_at", TS, server_default=NOW, nullable=False),
    )
    op.create_index(
        "ix_sla_policies_org_position",
        "sla_policies",
        ["organization_id", "position", "created_at"],
    )
    op.create_index(
        "uq_sla_policies_default",
        "sla_policies",
        ["organization_id"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )
    op.create_table(
        "sla_states",
        sa.Column("conversation_id", sa.UUID(), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", name="pk_sla_states"),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("policy_id", sa.UUID(), nullable=True),
        sa.Column("priority", sa.String(8), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("first_response_due_at", TS, nullable=True),
        sa.Column("resolution_due_at", TS, nullable=True),
        sa.Column("first_responded_at", TS, nullable=True),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("first_response_breached_at", TS, nullable=True),
        sa.Column("resolution_breached_at", TS, nullable=True),
        sa.Column("applied_at", TS, server_default=NOW, nullable=False),
    )
    op.create_table(
        "csat_settings",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", name="pk_csat_settings"),
        sa.Column("enabled", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("question", sa.String(1024), nullable=False),
        sa.Column("template_name", sa.String(512), nullable=True),
        sa.Column("template_language", sa.String(16), nullable=True),
        sa.Column("comment_prompt", sa.String(1024), nullable=True),
        sa.Column("min_interval_hours", sa.Integer(), server_default="24", nullable=False),
        sa.Column("updated_by", sa.UUID(), nullable=True),
        sa.Column("updated_at", TS, server_default=NOW, nullable=False),
    )
    op.create_table(
        "csat_surveys",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_csat_surveys"),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("conversation_id", sa.UUID(), nullable=False),
        sa.Column("contact_id", sa.UUID(), nullable=False),
        sa.Column("resolved_at", TS, nullable=False),
        sa.Column("agent_id", sa.UUID(), nullable=True),
        sa.Column("department_id", sa.UUID(), nullable=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), server_default="sent", nullable=False),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("comment", sa.String(4096), nullable=True),
        sa.Column("sent_at", TS, server_default=NOW, nullable=False),
        sa.Column("answered_at", TS, nullable=True),
        sa.Column("commented_at", TS, nullable=True),
        sa.UniqueConstraint("conversation_id", "resolved_at", name="uq_csat_surveys_resolution"),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name="ck_csat_surveys_rating"),
        sa.CheckConstraint("status IN ('sent', 'answered')", name="ck_csat_surveys_status"),
    )
    op.create_index(
        "ix_csat_surveys_contact_sent", "csat_surveys", ["organization_id", "contact_id", "sent_at"]
    )
    op.create_index(
        "ix_csat_surveys_org_answered", "csat_surveys", ["organization_id", "answered_at", "id"]
    )
    op.create_index("ix_csat_surveys_org_sent", "csat_surveys", ["organization_id", "sent_at"])
    for table in TENANT_TABLES:
        for stmt in rls_statements(table):
            op.execute(stmt)


def downgrade() -> None:
    for table in reversed(TENANT_TABLES):
        op.drop_table(table)
