"""the delivery claim's index: an endpoint's pending deliveries by due time

The worker claims, per endpoint with a free slot, its oldest due pending deliveries
(``next_attempt_at <= now()``): this index walks exactly those, however large the log.

Revision ID: 0002_whperf
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_whperf"
down_revision = "0001"


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_due",
        "deliveries",
        ["endpoint_id", "next_attempt_at", "seq"],
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_due", table_name="deliveries")
