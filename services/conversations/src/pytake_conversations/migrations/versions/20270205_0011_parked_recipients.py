"""conversations: campaign recipients parked until the contact replica has their contact

A recipient whose contact is not in ``contact_replicas`` yet (contacts' creation event not
consumed, campaigns' replica ahead of ours) is parked on its claim (``parked``: the
dispatched event's data, ``parked_until``: when it is refused as ``contact_not_found``)
instead of refused at once; the maintenance worker resumes it. Nullable columns without
defaults rewrite nothing; the partial index (only parked rows) is built ``CONCURRENTLY``
like 0004.

Revision ID: 0011_parked
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_parked"
down_revision = "0009_cflow"

INDEX = "ix_campaign_recipients_parked"


def upgrade() -> None:
    op.add_column("campaign_recipients", sa.Column("parked", sa.dialects.postgresql.JSONB()))
    op.add_column("campaign_recipients", sa.Column("parked_until", sa.DateTime(timezone=True)))
    with op.get_context().autocommit_block():
        op.create_index(
            INDEX,
            "campaign_recipients",
            ["parked_until"],
            postgresql_where=sa.text("parked_until IS NOT NULL"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, "campaign_recipients", postgresql_concurrently=True)
    op.drop_column("campaign_recipients", "parked_until")
    op.drop_column("campaign_recipients", "parked")
