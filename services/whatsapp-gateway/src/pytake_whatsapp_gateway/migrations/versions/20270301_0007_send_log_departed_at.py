"""send_log.departed_at: when the Graph call that sent the message left

Revision ID: 0007_departed_at
Revises: 0006_outbox_dead
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_departed_at"
down_revision = "0006_outbox_dead"


def upgrade() -> None:
    op.add_column("send_log", sa.Column("departed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("send_log", "departed_at")
