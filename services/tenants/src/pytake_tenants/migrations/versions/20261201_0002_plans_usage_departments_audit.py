"""organization profile/settings/trial/suspension; users replica, departments,
usage facts and counters, daily stats, operator audit log

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from pytake_common.db import rls_statements

revision = "0002"
down_revision = "0001"

TENANT_TABLES = (
    "users",
    "departments",
    "department_members",
    "usage_facts",
    "usage_counters",
    "daily_stats",
    "audit_log",
)


def upgrade() -> None:
    empty = sa.text("'{}'::jsonb")
    op.add_column(
        "organizations", sa.Column("profile", JSONB, nullable=False, server_default=empty)
    )
    op.add_column(
        "organizations", sa.Column("settings", JSONB, nullable=False, server_default=empty)
    )
    op.add_column("organizations", sa.Column("trial_ends_at", sa.DateTime(timezone=True)))
    op.add_column("organizations", sa.Column("suspended_at", sa.DateTime(timezone=True)))
    op.add_column("organizations", sa.Column("suspension_reason", sa.String(500)))
    op.create_index("ix_organizations_created_at_id", "organizations", ["created_at", "id"])
    op.create_index(
        "ix_organizations_trial_ends_at",
        "organizations",
        ["trial_ends_at"],
        postgresql_where=sa.text("trial_ends_at IS NOT NULL"),
    )

    op.create_table(
        "users",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("full_name", sa.String(200)),
        sa.Column("role", sa.String(20)),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index("ix_users_organization_id", "users", ["organization_id"])

    op.create_table(
        "departments",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.String(500)),
        sa.Column("routing_strategy", sa.String(20), nullable=False, server_default="round_robin"),
        sa.Column("max_open_per_agent", sa.Integer),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint(
            "routing_strategy IN ('round_robin', 'manual')",
            name="ck_departments_routing_strategy",
        ),
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_departments_org_name ON departments (organization_id, lower(name))"
    )
    op.create_index(
        "ix_departments_org_created", "departments", ["organization_id", "created_at", "id"]
    )

    op.create_table(
        "department_members",
        sa.Column(
            "department_id",
            UUID(as_uuid=True),
            sa.ForeignKey(
                "departments.id",
                ondelete="CASCADE",
                name="fk_department_members_department_id_departments",
            ),
            nullable=False,
        ),
        sa.Column("user_id", UUID(as_uuid=True), nullable=False),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column(
            "added_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("department_id", "user_id", name="pk_department_members"),
    )
    op.create_index("ix_department_members_user_id", "department_members", ["user_id"])

    op.create_table(
        "usage_facts",
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("subject_id", UUID(as_uuid=True), nullable=False),
        sa.Column("period", sa.String(7), nullable=False, server_default=""),
        sa.Column(
            "counted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("removed_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("organization_id", "kind", "subject_id", name="pk_usage_facts"),
    )
    op.create_table(
        "usage_counters",
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("metric", sa.String(40), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("value", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("organization_id", "metric", "period", name="pk_usage_counters"),
    )
    op.create_table(
        "daily_stats",
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("conversations_opened", sa.Integer, nullable=False, server_default="0"),
        sa.Column("messages_inbound", sa.Integer, nullable=False, server_default="0"),
        sa.Column("messages_outbound", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("organization_id", "day", name="pk_daily_stats"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("actor_id", UUID(as_uuid=True), nullable=False),
        sa.Column("actor_organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("before", JSONB),
        sa.Column("after", JSONB),
        sa.Column("reason", sa.Text),
        sa.Column("request_id", sa.String(128)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index("ix_audit_log_org_id", "audit_log", ["organization_id", "id"])
    for table in TENANT_TABLES:
        for stmt in rls_statements(table):
            op.execute(stmt)


def downgrade() -> None:
    for table in reversed(TENANT_TABLES):
        op.drop_table(table)
    op.drop_index("ix_organizations_trial_ends_at", table_name="organizations")
    op.drop_index("ix_organizations_created_at_id", table_name="organizations")
    for column in ("suspension_reason", "suspended_at", "trial_ends_at", "settings", "profile"):
        op.drop_column("organizations", column)
