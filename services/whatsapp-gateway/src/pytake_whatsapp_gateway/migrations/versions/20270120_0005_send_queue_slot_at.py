"""send_queue.slot_at: a background request holds room only until its slot begins

Revision ID: 0005_slot_at
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_slot_at"
down_revision = "0004_cflow"


def upgrade() -> None:
    op.add_column("send_queue", sa.Column("slot_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("send_queue", "slot_at")
