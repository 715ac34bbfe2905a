"""send_queue.priority: a number's interactive sends before automation, before campaign

Revision ID: 0004_cflow
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_cflow"
down_revision = "0003"


def upgrade() -> None:
    op.add_column(
        "send_queue", sa.Column("priority", sa.SmallInteger, nullable=False, server_default="0")
    )
    # The dispatcher's look at a number's waiting background requests, in their order...
    op.create_index(
        "ix_send_queue_background",
        "send_queue",
        ["number_id", "priority", "seq"],
        postgresql_where=sa.text("priority > 0"),
    )
    # ... and at how many of them are in flight.
    op.create_index(
        "ix_send_queue_background_taken",
        "send_queue",
        ["number_id"],
        postgresql_where=sa.text("priority > 0 AND taken_until IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_send_queue_background_taken", "send_queue")
    op.drop_index("ix_send_queue_background", "send_queue")
    op.drop_column("send_queue", "priority")
