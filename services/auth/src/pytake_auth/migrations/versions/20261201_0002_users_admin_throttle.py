"""soft-deleted users, and the login/register/refresh throttle buckets

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("users", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    # Platform-wide (no RLS): a bucket is keyed by a hash of an e-mail or an address,
    # before any tenant is known.
    op.create_table(
        "throttle_buckets",
        sa.Column("bucket", sa.String(64), primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hits", sa.Integer, nullable=False),
        sa.Column("previous_hits", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_throttle_buckets_expires_at", "throttle_buckets", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_throttle_buckets_expires_at", table_name="throttle_buckets")
    op.drop_table("throttle_buckets")
    op.drop_column("users", "deleted_at")
