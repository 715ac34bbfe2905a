"""API clients (client-credentials grant) and auth's audit log

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from pytake_common.db import rls_statements

revision = "0003"
down_revision = "0002"

CLIENT_ROLES = ("org_admin", "agent", "viewer")


def _ts(name: str, *, nullable: bool = True, default: bool = False) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if default else None,
    )


def upgrade() -> None:
    op.create_table(
        "api_clients",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("scopes", ARRAY(sa.Text), nullable=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("secret_id", UUID(as_uuid=True), nullable=False),
        _ts("expires_at"),
        sa.Column("created_by", UUID(as_uuid=True), nullable=False),
        _ts("created_at", nullable=False, default=True),
        _ts("secret_rotated_at"),
        _ts("last_used_at"),
        _ts("deleted_at"),
        sa.CheckConstraint(
            "role IN (" + ", ".join(f"'{r}'" for r in CLIENT_ROLES) + ")", name="role_allowed"
        ),
    )
    op.create_index(
        "ix_api_clients_listing", "api_clients", ["organization_id", "created_at", "id"]
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("actor_type", sa.String(16), nullable=False),
        sa.Column("actor_id", UUID(as_uuid=True), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("target_type", sa.String(40), nullable=False),
        sa.Column("target_id", UUID(as_uuid=True), nullable=False),
        sa.Column("detail", JSONB, nullable=True),
        sa.Column("source_address", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        _ts("at", nullable=False, default=True),
    )
    op.create_index("ix_audit_log_target", "audit_log", ["organization_id", "target_id", "id"])
    for table in ("api_clients", "audit_log"):
        for stmt in rls_statements(table):
            op.execute(stmt)


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("api_clients")
