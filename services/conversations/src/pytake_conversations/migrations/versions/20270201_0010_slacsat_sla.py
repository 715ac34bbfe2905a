"""conversations: the SLA of the current cycle (policy, due times, first reply, breaches)

Automation's ``sla.applied`` / ``sla.breached`` events fill these (``sla.py``). Nullable
columns without defaults: adding them rewrites nothing. The two partial indexes (the
``sla=breached`` inbox filter, the metrics' attainment by cycle start) are built
``CONCURRENTLY`` like 0004 and 0007, so writers are not blocked on a big table.

Revision ID: 0010_slacsat
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_slacsat"
down_revision = "0009_auto"

TS = sa.DateTime(timezone=True)
COLUMNS = (
    ("sla_policy_id", sa.UUID(as_uuid=True)),
    ("sla_started_at", TS),
    ("sla_applied_at", TS),
    ("first_response_due_at", TS),
    ("resolution_due_at", TS),
    ("sla_responded_at", TS),
    ("first_response_breached_at", TS),
    ("resolution_breached_at", TS),
)
BREACHED = "ix_conversations_sla_breached"
STARTED = "ix_conversations_sla_started"


def upgrade() -> None:
    for name, type_ in COLUMNS:
        op.add_column("conversations", sa.Column(name, type_, nullable=True))
    with op.get_context().autocommit_block():
        op.create_index(
            BREACHED,
            "conversations",
            ["organization_id", "last_message_at", "id"],
            postgresql_where=sa.text(
                "first_response_breached_at IS NOT NULL OR resolution_breached_at IS NOT NULL"
            ),
            postgresql_concurrently=True,
        )
        op.create_index(
            STARTED,
            "conversations",
            ["organization_id", "sla_started_at"],
            postgresql_where=sa.text("sla_started_at IS NOT NULL"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(STARTED, "conversations", postgresql_concurrently=True)
        op.drop_index(BREACHED, "conversations", postgresql_concurrently=True)
    for name, _ in reversed(COLUMNS):
        op.drop_column("conversations", name)
