"""conversations: the SLA of the current cycle (policy, due times, first reply, breaches)

Automation's ``sla.applied`` / ``sla.breached`` events fill these (``sla.py``). Nullable
columns without defaults: adding them rewrites nothing. The two partial indexes (the
``sla=breached`` inbox filter, the metrics' attainment by cycle start) and the two of
``sla=at_risk`` (running targets by due time) are built ``CONCURRENTLY`` like 0004 and
0007, so writers are not blocked on a big table.

Measured (EXPLAIN ANALYZE, embedded PostgreSQL 18 on the shared 2-core box: noisy), one
organization of 100,000 conversations with SLA cycles, 40 at risk: ``sla=at_risk`` first
page 95 ms (parallel sequential scan) without the due-time indexes, 12 ms with them (a
BitmapOr of both, cold heap reads); ``sla=breached`` 0.2 ms; the metrics' attainment
over 7 days (46,500 cycles) 72-120 ms, over a day 6 ms.

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
FIRST_RESPONSE_DUE = "ix_conversations_sla_first_response_due"
RESOLUTION_DUE = "ix_conversations_sla_resolution_due"


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
        op.create_index(
            FIRST_RESPONSE_DUE,
            "conversations",
            ["organization_id", "first_response_due_at"],
            postgresql_where=sa.text(
                "status IN ('open', 'pending') AND sla_responded_at IS NULL"
                " AND first_response_breached_at IS NULL"
            ),
            postgresql_concurrently=True,
        )
        op.create_index(
            RESOLUTION_DUE,
            "conversations",
            ["organization_id", "resolution_due_at"],
            postgresql_where=sa.text(
                "status IN ('open', 'pending') AND resolution_breached_at IS NULL"
            ),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(RESOLUTION_DUE, "conversations", postgresql_concurrently=True)
        op.drop_index(FIRST_RESPONSE_DUE, "conversations", postgresql_concurrently=True)
        op.drop_index(STARTED, "conversations", postgresql_concurrently=True)
        op.drop_index(BREACHED, "conversations", postgresql_concurrently=True)
    for name, _ in reversed(COLUMNS):
        op.drop_column("conversations", name)
